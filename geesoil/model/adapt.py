"""Adapt a model to a region's samples: the one code path behind `finetune`, `evaluate`, `map --samples` and
refresh jobs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from geesoil.covariates.source import CovariateSource
from geesoil.covariates.spec import CovariateSpec
from geesoil.covariates.window import Context
from geesoil.errors import ModelError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegionalTable:
    """Regional samples with their covariates: ``X`` (covariates + lon/lat) and target ``y``.

    ``covariates`` are all the covariates a regional model may use: the base model's, then the region-only ones
    (``regional``: those of the sources that the base model does not use, e.g. a regional pack's).
    """

    samples: pd.DataFrame
    X: pd.DataFrame
    y: np.ndarray
    covariates: tuple[CovariateSpec, ...]
    regional: tuple[CovariateSpec, ...]


@dataclass(frozen=True)
class RegionalFit:
    """A model fitted on a :class:`RegionalTable` with the strategy that made it."""

    model: Any
    strategy: str
    table: RegionalTable

    @property
    def description(self) -> str:
        choice = getattr(self.model, "choice_", None)
        return f"{self.strategy} (chose {choice})" if choice is not None else self.strategy


def is_pretrained_net(model: Any) -> bool:
    """True for a pretrained network that fine-tuning strategies can start from."""
    return getattr(model, "kind", "") == "soilnet" and hasattr(model, "nets_")


def regional_table(
    base: Any | None,
    samples: pd.DataFrame,
    source: CovariateSource,
    *,
    target: str = "oc_gkg",
    where: str = "samples",
) -> RegionalTable:
    """Sample ``source`` at ``samples``; without a ``base`` model every covariate of the source is region-only.

    Raises :class:`ModelError` when ``base`` needs covariates the source lacks, and the sample errors of
    :func:`geesoil.evaluate.covariate_table`. Region-only covariates without a value at any sample are dropped.
    """
    from geesoil.evaluate import covariate_table

    if base is None:
        base_specs: tuple[CovariateSpec, ...] = ()
    else:
        have = [s.name for s in source.specs]
        if hasattr(
            base, "check_covariates"
        ):  # the network's own message names the model and the missing ones
            base.check_covariates(have)
        missing = [s.name for s in base.covariates if s.name not in set(have)]
        if missing:
            raise ModelError(f"the model needs covariates the source does not provide: {', '.join(missing)}")
        base_specs = tuple(base.covariates)
    known = {c.name for c in base_specs}
    regional = tuple(s for s in source.specs if s.name not in known)
    specs = base_specs + regional
    # a windowed network: neighbours of every continuous covariate a regional model may use
    context = getattr(base, "context", None)
    if context is not None:
        context = Context.over(context.window, context.step_m, specs)
    samples, X, y = covariate_table(
        samples, source, [s.name for s in specs], target=target, where=where, context=context
    )
    empty = [c.name for c in regional if X[c.name].isna().all()]
    if empty:
        log.warning("%s: covariates with no value at any sample are ignored: %s", where, ", ".join(empty))
        regional = tuple(c for c in regional if c.name not in empty)
        X = X.drop(columns=empty)
    return RegionalTable(samples=samples, X=X, y=y, covariates=base_specs + regional, regional=regional)


def fit_regional(
    base: Any,
    samples: pd.DataFrame,
    source: CovariateSource,
    *,
    strategy: str | None = None,
    seed: int = 0,
    target: str = "oc_gkg",
    where: str = "samples",
) -> RegionalFit:
    """Fit ``strategy`` (default ``auto``: nested spatial CV over what can start from ``base``) on ``samples``.

    From a pretrained network every fine-tuning strategy, ``scratch``, ``rf`` and ``qrf`` are possible; from any
    other model (e.g. a forest) only the regional-only learners are.
    """
    from geesoil.evaluate import BASELINES, available_methods, check_methods, method_factory, require_samples
    from geesoil.model.finetune import STRATEGIES

    pretrained = base if is_pretrained_net(base) else None
    table = regional_table(base, samples, source, target=target, where=where)
    require_samples(len(table.y), where)
    strategy = strategy or "auto"
    valid = available_methods(pretrained, table.regional)
    if strategy not in valid:
        if strategy == "regional-branch":  # explains that it needs region-only covariates
            check_methods([strategy], pretrained, table.regional)
        if strategy not in {"auto", "scratch", *BASELINES, *STRATEGIES}:
            raise ModelError(f"unknown strategy {strategy!r}; choose from {', '.join(valid)}")
        start = "a pretrained network" if pretrained is not None else f"a {getattr(base, 'kind', '?')} model"
        raise ModelError(f"strategy {strategy!r} cannot start from {start}; choose from {', '.join(valid)}")
    model = method_factory(strategy, pretrained, table.covariates, table.regional, seed)().fit(
        table.X, table.y
    )
    return RegionalFit(model=model, strategy=strategy, table=table)
