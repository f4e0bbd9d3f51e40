"""Covariates: catalogs, local covariate packs, the starter pack and the common source interface."""

from __future__ import annotations

from geesoil.covariates.spec import GROUPS, CovariateSpec

__all__ = ["GROUPS", "CovariateSpec"]
