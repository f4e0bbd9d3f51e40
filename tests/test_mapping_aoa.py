"""Area of applicability: hand-computed dissimilarity indices and thresholds, weights, categoricals, storage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from geesoil.covariates.spec import CovariateSpec
from geesoil.mapping.aoa import AOAError, AOAReference, model_importance, reference_for

A = CovariateSpec("a", "other")
B = CovariateSpec("b", "other")
LC = CovariateSpec("lc", "landcover", kind="categorical")


def test_di_and_threshold_match_hand_computation() -> None:
    # values 0,1,2,3: mean |Δ| over the 6 pairs is 10/6, and DI = |Δ to nearest| / (10/6) whatever the scaling.
    train = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0]})
    ref = AOAReference.fit(train, [A], folds=np.array([0, 1, 0, 1]))
    assert ref.mean_distance * ref.std[0] == pytest.approx(10 / 6)
    # each sample's nearest sample in the other fold is 1 away: CV DI 0.6 for all, so the threshold is 0.6
    assert ref.train_di == pytest.approx([0.6] * 4)
    assert ref.threshold == pytest.approx(0.6)
    di = ref.di(pd.DataFrame({"a": [1.5, 10.0, -0.5, np.nan]}), [A])
    assert di[:3] == pytest.approx([0.3, 4.2, 0.3])
    assert np.isnan(di[3])
    assert ref.inside(di).tolist() == [1, 0, 1, 0]


def test_threshold_drops_outliers_of_the_training_di() -> None:
    # 20 evenly spaced samples plus one far away: its CV DI is an outlier, so the threshold stays at the others'
    train = pd.DataFrame({"a": [*range(20), 200.0]})
    ref = AOAReference.fit(train, [A], folds=np.arange(21) % 2)
    assert ref.train_di.max() > 5 * ref.threshold
    assert ref.threshold == pytest.approx(np.sort(ref.train_di)[-2])


def test_importance_weights_and_categorical_indicators() -> None:
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60), "lc": rng.integers(1, 3, 60)})
    ref = AOAReference.fit(train, [A, B], importance={"a": 1.0, "b": 0.0})
    far_in_b = pd.DataFrame({"a": [0.0], "b": [50.0]})
    assert ref.inside(ref.di(far_in_b, [A, B]))[0] == 1  # b carries no weight
    ref2 = AOAReference.fit(train, [A, B, LC])
    assert ref2.columns == ("a", "b", "lc=1", "lc=2")
    seen = ref2.di(pd.DataFrame({"a": [0.0], "b": [0.0], "lc": [1.0]}), [A, B, LC])
    unseen = ref2.di(pd.DataFrame({"a": [0.0], "b": [0.0], "lc": [3.0]}), [A, B, LC])
    assert unseen[0] > seen[0]  # a class never seen in training has all indicators 0: away from every sample


def test_round_trip_and_where_the_reference_comes_from() -> None:
    rng = np.random.default_rng(1)
    train = pd.DataFrame(
        {"a": rng.normal(size=30), "lon": rng.uniform(0, 1, 30), "lat": rng.uniform(0, 1, 30)}
    )
    ref = AOAReference.fit(train, [A])
    back = AOAReference.from_dict(ref.to_dict())
    x = pd.DataFrame({"a": [0.1, 4.0]})
    assert back.di(x, [A]) == pytest.approx(ref.di(x, [A]))

    class Model:
        covariates = (A,)

    with pytest.raises(AOAError, match="--samples"):
        reference_for(Model(), {"model": {}}, None)
    assert reference_for(Model(), {"model": {"aoa": ref.to_dict()}}, None)[1] == "metadata"
    assert reference_for(Model(), None, train)[1] == "samples"
    m = Model()
    m.training_X_ = train  # type: ignore[attr-defined]
    assert reference_for(m, None, None)[1] == "model"
    with pytest.raises(AOAError, match="lack covariate"):
        AOAReference.fit(train.drop(columns="a"), [A])


def test_forest_importance_is_summed_per_covariate() -> None:
    from geesoil.baselines import RandomForestSoil

    rng = np.random.default_rng(2)
    X = pd.DataFrame(
        {"a": rng.normal(size=80), "lc": rng.integers(1, 4, 80).astype(float), "lon": rng.uniform(size=80)}
    )
    X["lat"] = rng.uniform(size=80)
    y = 10 + 5 * X["a"].to_numpy() + rng.normal(0, 0.1, 80)
    model = RandomForestSoil([A, LC], n_estimators=10, random_state=0).fit(X, y)
    imp = model_importance(model)
    assert imp is not None and set(imp) >= {"a", "lc", "lon", "lat"}
    assert imp["a"] > imp["lc"]  # y depends on a only
