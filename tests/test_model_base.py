"""The estimator contract's helpers: ``mean_prediction`` and ``predict_layers`` (one pass vs the separate methods)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from test_baselines import SPECS, synthetic_region

from geesoil.baselines import QuantileForestSoil, RandomForestSoil
from geesoil.model.base import mean_prediction, predict_layers


def assert_layers_match(model: Any, X: pd.DataFrame, alpha: float = 0.1) -> dict[str, np.ndarray]:
    """``predict_layers`` gives what the model's separate methods give, key by key."""
    got = predict_layers(model, X, alpha, median=True, std=True)
    lo, hi = model.predict_interval(X, alpha=alpha)
    expected = {
        "point": model.predict(X),
        "mean": mean_prediction(model, X),
        "lo": lo,
        "hi": hi,
        "std": model.predict_std(X),
    }
    if hasattr(model, "predict_median"):
        expected["median"] = model.predict_median(X)
    assert set(got) == set(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-6, atol=1e-9, err_msg=key)
    without = predict_layers(model, X, alpha)
    assert set(without) == {"point", "mean", "lo", "hi"}
    return got


@pytest.mark.parametrize("cls", [RandomForestSoil, QuantileForestSoil])
def test_forest_layers_match_their_methods(cls: type) -> None:
    X, y = synthetic_region(200, seed=11)
    model = cls(SPECS, n_estimators=40, random_state=0).fit(X.iloc[:150], y[:150])
    got = assert_layers_match(model, X.iloc[150:], alpha=0.2)
    assert ("median" in got) == (cls is QuantileForestSoil)  # RF has no median of its own
    if cls is QuantileForestSoil:  # a median forest: its point is the median, its mean is another number
        np.testing.assert_array_equal(got["point"], got["median"])
        assert np.abs(got["mean"] - got["median"]).max() > 0
