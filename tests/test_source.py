"""CombinedSource looks covariates up by name across sources, in the order asked for."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from geesoil.covariates.source import CombinedSource, CovariateSource
from geesoil.covariates.spec import CovariateSpec
from geesoil.errors import CovariateError
from geesoil.grid import Grid


class PlaneSource:
    """A source whose covariate ``name`` equals ``factor * lon + lat`` everywhere."""

    def __init__(self, factors: dict[str, float]) -> None:
        self.factors = factors

    @property
    def specs(self):
        return tuple(CovariateSpec(name=n, group="topo") for n in self.factors)

    def sample(self, points, names=None):
        names = list(names or self.factors)
        return pd.DataFrame(
            {n: self.factors[n] * points["lon"] + points["lat"] for n in names}, index=points.index
        )

    def read(self, grid, names=None):
        names = list(names or self.factors)
        xx, yy = np.meshgrid(grid.x, grid.y)
        return xr.Dataset(
            {n: (("y", "x"), self.factors[n] * xx + yy) for n in names}, coords={"y": grid.y, "x": grid.x}
        )


def test_combined_source_routes_by_name_and_keeps_order():
    a, b = PlaneSource({"elev": 1.0, "twi": 2.0}), PlaneSource({"twi": 100.0, "gamma_k": 3.0})
    src = CombinedSource([a, b])
    assert isinstance(src, CovariateSource)
    assert [s.name for s in src.specs] == ["elev", "twi", "gamma_k"]
    pts = pd.DataFrame({"lon": [149.6, 149.7], "lat": [-30.1, -30.2]}, index=[10, 11])
    out = src.sample(pts, ["gamma_k", "elev", "twi"])
    assert list(out.columns) == ["gamma_k", "elev", "twi"]
    assert list(out.index) == [10, 11]
    # first source wins on duplicate names
    np.testing.assert_allclose(out["twi"], 2.0 * pts["lon"] + pts["lat"])
    np.testing.assert_allclose(out["gamma_k"], 3.0 * pts["lon"] + pts["lat"])
    ds = src.read(Grid.from_bounds((149.5, -30.3, 150.0, -30.0), "EPSG:4326", 0.1))
    assert set(ds.data_vars) == {"elev", "twi", "gamma_k"}
    np.testing.assert_allclose(ds["gamma_k"].values[0, 0], 3.0 * ds.x.values[0] + ds.y.values[0])


def test_combined_source_names_missing_covariates():
    src = CombinedSource([PlaneSource({"elev": 1.0})])
    with pytest.raises(CovariateError, match="bio01, bio12"):
        src.sample(pd.DataFrame({"lon": [0.0], "lat": [0.0]}), ["elev", "bio01", "bio12"])
    with pytest.raises(CovariateError):
        CombinedSource([])
