"""The ``stacked-qrf`` strategy: stacking into a quantile regression forest.

The pretrained network's median prediction becomes one more covariate of a regional QRF, next to the covariates
and coordinates the regional forests use. The forest decides per region how much of the global relationship to
keep: where the pretrained model ranks sites well it splits on it, where it does not the split goes to the
regional covariates or coordinates. Point prediction, mean, intervals (OOB-conformal) and serialisation are the
QRF's (:class:`geesoil.baselines.QuantileForestSoil`).

The feature is honest for the training rows only because the pretrained network never saw the regional samples
(the shipped models hold the experiment regions out of pretraining); a *fine-tuned* network's in-sample
predictions would leak the target into the forest, so none is used here.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from geesoil.baselines import QuantileForestSoil, merge_covariates
from geesoil.covariates.spec import CovariateSpec
from geesoil.errors import ModelError
from geesoil.model.io import nest_blobs, rebuild, register, unnest_blobs
from geesoil.model.network import check_covariates, require_min_samples, training_summary
from geesoil.model.train import default_groups

#: the name of the pretrained network's prediction among the forest's covariates
NET_FEATURE = "pretrained_soc"


@register("stacked-qrf")
class StackedQRF:
    """QRF on the regional covariates, coordinates and the pretrained network's median SOC (g/kg).

    ``pretrained`` is a fitted :class:`~geesoil.model.network.SoilNet`; ``regional_covariates`` are region-only
    covariates the forest also uses; ``forest_params`` go to :class:`QuantileForestSoil` (e.g. ``n_estimators``).
    """

    kind = "stacked-qrf"

    def __init__(
        self,
        pretrained: Any | None,
        *,
        regional_covariates: Sequence[CovariateSpec] = (),
        random_state: int = 0,
        **forest_params: Any,
    ) -> None:
        self.pretrained = pretrained
        self.regional_covariates = tuple(regional_covariates)
        self.random_state = random_state
        self.forest_params = dict(forest_params)

    @property
    def covariates(self) -> tuple[CovariateSpec, ...]:
        """The network's covariates, then the region-only ones (the forest's, without :data:`NET_FEATURE`)."""
        base = tuple(self.pretrained.covariates) if self.pretrained is not None else ()
        return merge_covariates(base, self.regional_covariates)

    @property
    def context(self) -> Any | None:
        """The pretrained network's pixel window (its prediction needs the same input table)."""
        return getattr(self.pretrained, "context", None)

    def check_covariates(self, available_names: Iterable[str]) -> None:
        """Raise :class:`ModelError` naming every covariate the model needs that ``available_names`` lacks."""
        check_covariates(self.covariates, available_names)

    def _with_net(self, X: pd.DataFrame) -> pd.DataFrame:
        return X.assign(**{NET_FEATURE: np.asarray(self.pretrained.predict_median(X), float)})

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> StackedQRF:
        if self.pretrained is None or not hasattr(self.pretrained, "nets_"):
            raise ModelError(
                "strategy 'stacked-qrf' needs a fitted pretrained SoilNet (load one with load_model)"
            )
        require_min_samples(len(X), "stacking into QRF (stacked-qrf)")
        if NET_FEATURE in X.columns:
            raise ModelError(
                f"stacked-qrf: the input already has a column {NET_FEATURE!r}; rename that covariate"
            )
        specs = self.covariates + (CovariateSpec(name=NET_FEATURE, group="transfer"),)
        params = {"random_state": self.random_state, **self.forest_params}
        t0 = time.perf_counter()
        self.forest_ = QuantileForestSoil(specs, **params).fit(self._with_net(X), y)
        y = np.asarray(y, float)
        summary = training_summary(X, y, default_groups(X), None, time.perf_counter() - t0)
        self.training_summary_ = {
            **summary,
            "strategy": self.kind,
            "pretrained": dict(self.pretrained.training_summary_),
        }
        return self

    def _fitted(self) -> QuantileForestSoil:
        if not hasattr(self, "forest_"):
            raise ModelError("stacked-qrf model is not fitted; call fit() first")
        return self.forest_

    # --- prediction: the forest's, on the covariates plus the network's prediction ------------------------
    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The conditional median (g/kg)."""
        return self._fitted().predict(self._with_net(X))

    def predict_median(self, X: pd.DataFrame) -> np.ndarray:
        """The conditional median (g/kg): the same as :meth:`predict`."""
        return self.predict(X)

    def predict_mean(self, X: pd.DataFrame) -> np.ndarray:
        """The conditional mean (g/kg), for stocks and area totals."""
        return self._fitted().predict_mean(self._with_net(X))

    def predict_std(self, X: pd.DataFrame) -> np.ndarray:
        """Half the 16-84 % quantile range (g/kg)."""
        return self._fitted().predict_std(self._with_net(X))

    def predict_interval(self, X: pd.DataFrame, alpha: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
        """OOB-conformalised central ``1 - alpha`` interval (g/kg)."""
        return self._fitted().predict_interval(self._with_net(X), alpha)

    def predict_layers(
        self, X: pd.DataFrame, alpha: float = 0.1, *, median: bool = False, std: bool = False
    ) -> dict[str, np.ndarray]:
        """:func:`geesoil.model.base.predict_layers`: one network pass, then the forest's one-pass layers."""
        return self._fitted().predict_layers(self._with_net(X), alpha, median=median, std=std)

    # --- serialisation: the network and the forest, each under its own blob prefix -------------------------
    def to_state(self) -> tuple[dict[str, Any], dict[str, bytes]]:
        forest = self._fitted()
        net_meta, net_blobs = self.pretrained.to_state()
        forest_meta, forest_blobs = forest.to_state()
        meta = {
            "params": {"random_state": self.random_state, **self.forest_params},
            "regional_covariates": [c.name for c in self.regional_covariates],
            "net": {"kind": self.pretrained.kind, "model": net_meta},
            "forest": forest_meta,
            "training": self.training_summary_,
        }
        return meta, nest_blobs("net", net_blobs) | nest_blobs("forest", forest_blobs)

    @classmethod
    def from_state(cls, meta: dict[str, Any], blobs: dict[str, bytes]) -> StackedQRF:
        net = rebuild(
            meta["net"]["kind"], meta["net"]["model"], unnest_blobs("net", blobs), "stacked-qrf network"
        )
        forest = QuantileForestSoil.from_state(meta["forest"], unnest_blobs("forest", blobs))
        names = [c.name for c in forest.covariates]
        if not names or names[-1] != NET_FEATURE:
            raise ModelError(
                f"stacked-qrf model file is inconsistent: the forest's last covariate is not {NET_FEATURE}"
            )
        regional = set(meta["regional_covariates"])
        model = cls(
            net,
            regional_covariates=[c for c in forest.covariates if c.name in regional],
            **meta["params"],
        )
        model.forest_ = forest
        model.training_summary_ = dict(meta["training"])
        return model
