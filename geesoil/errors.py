"""Errors a user can cause: each names the input at fault and how to fix it; the CLI maps them to exit code 2."""

from __future__ import annotations


class GeesoilError(Exception):
    """Base class for problems with the user's input or environment (not bugs)."""


class SampleFileError(GeesoilError):
    """A sample table cannot be used as a whole (unreadable, missing columns, no valid rows...)."""


class SampleRowError(GeesoilError):
    """A row-level problem raised in ``--strict`` mode."""


class CovariateError(GeesoilError):
    """A catalog, covariate pack or covariate source is missing, malformed or cannot serve a request."""


class ModelError(GeesoilError):
    """A model file is missing, malformed or does not match the covariates or samples given."""


class EarthEngineError(GeesoilError):
    """Earth Engine is not authenticated, unreachable, or rejected a request."""
