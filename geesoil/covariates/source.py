"""The one interface every covariate source implements, and a source that combines several by covariate name."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import pandas as pd
import xarray as xr

from geesoil.covariates.spec import CovariateSpec
from geesoil.errors import CovariateError
from geesoil.grid import Grid


@runtime_checkable
class CovariateSource(Protocol):
    """Serves covariates by name, at points or on a pixel grid.

    ``sample(points)``: ``points`` has ``lon``/``lat`` columns (WGS84); returns a DataFrame with the same index and
    one column per covariate (float; NaN where the source has no data). ``read(grid)``: an ``xarray.Dataset`` with
    one variable per covariate on the grid's ``y``/``x`` pixel centres (NaN where no data).
    """

    @property
    def specs(self) -> tuple[CovariateSpec, ...]: ...

    def sample(self, points: pd.DataFrame, names: Sequence[str] | None = None) -> pd.DataFrame: ...

    def read(self, grid: Grid, names: Sequence[str] | None = None) -> xr.Dataset: ...


class CombinedSource:
    """Several sources looked up by covariate name (first source wins on duplicate names)."""

    def __init__(self, sources: Sequence[CovariateSource]) -> None:
        if not sources:
            raise CovariateError("no covariate source given")
        self.sources = tuple(sources)
        owner: dict[str, CovariateSource] = {}
        specs: list[CovariateSpec] = []
        for src in self.sources:
            for spec in src.specs:
                if spec.name not in owner:
                    owner[spec.name] = src
                    specs.append(spec)
        self._owner = owner
        self._specs = tuple(specs)

    @property
    def specs(self) -> tuple[CovariateSpec, ...]:
        return self._specs

    def _split(self, names: Sequence[str] | None) -> list[tuple[CovariateSource, list[str]]]:
        names = list(names) if names is not None else [s.name for s in self._specs]
        missing = [n for n in names if n not in self._owner]
        if missing:
            raise CovariateError(
                f"covariates not provided by any given source: {', '.join(missing)}; "
                f"available: {', '.join(self._owner)}"
            )
        groups: dict[int, tuple[CovariateSource, list[str]]] = {}
        for n in names:
            src = self._owner[n]
            groups.setdefault(id(src), (src, []))[1].append(n)
        return list(groups.values())

    def sample(self, points: pd.DataFrame, names: Sequence[str] | None = None) -> pd.DataFrame:
        parts = [src.sample(points, part) for src, part in self._split(names)]
        out = pd.concat(parts, axis=1)
        return out[list(names)] if names is not None else out[[s.name for s in self._specs]]

    def read(self, grid: Grid, names: Sequence[str] | None = None) -> xr.Dataset:
        return xr.merge([src.read(grid, part) for src, part in self._split(names)], compat="override")
