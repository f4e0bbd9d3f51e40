"""``stacked-qrf``: the pretrained network's prediction as one more covariate of a regional QRF."""

from __future__ import annotations

import numpy as np
import pytest
from test_finetune import REGIONAL, mae, make_region
from test_model_network import SPECS, make_world

from geesoil.baselines import QuantileForestSoil
from geesoil.errors import ModelError
from geesoil.model.auto import AutoModel
from geesoil.model.finetune import make_strategy
from geesoil.model.io import load_model, save_model
from geesoil.model.network import SoilNet
from geesoil.model.stack import NET_FEATURE


@pytest.fixture(scope="module")
def pretrained() -> SoilNet:
    X, y = make_world(3000, seed=1)
    return SoilNet(SPECS, n_members=2, max_epochs=40, patience=10, progress=False, random_state=0).fit(X, y)


@pytest.fixture(scope="module")
def region():
    X, y = make_region(840, seed=0, gamma_effect=0.3)
    return X.iloc[:40], y[:40], X.iloc[40:], y[40:]


def test_stacking_carries_the_global_relationship_into_the_forest(pretrained, region) -> None:
    Xtr, ytr, Xte, yte = region
    stacked = make_strategy("stacked-qrf", pretrained, regional_covariates=REGIONAL, n_estimators=200).fit(
        Xtr, ytr
    )
    qrf = QuantileForestSoil(SPECS + REGIONAL, n_estimators=200, random_state=0).fit(Xtr, ytr)
    # 40 samples cannot teach a forest the climate relationship that the pretrained network learnt from 3000
    assert mae(stacked.predict(Xte), yte) < 0.9 * mae(qrf.predict(Xte), yte)
    imp = dict(zip(stacked.forest_.feature_names_, stacked.forest_.forest_.feature_importances_, strict=True))
    assert max(imp, key=imp.get) == NET_FEATURE
    # the region-only covariate reaches the forest too
    assert "gamma_k" in imp and [c.name for c in stacked.covariates] == [s.name for s in SPECS] + ["gamma_k"]
    lo, hi = stacked.predict_interval(Xte, alpha=0.1)
    assert 0.75 < np.mean((yte >= lo) & (yte <= hi)) <= 1.0
    assert stacked.training_summary_["n"] == 40 and stacked.training_summary_["strategy"] == "stacked-qrf"


def test_a_covariate_named_like_the_network_feature_is_refused(pretrained, region) -> None:
    Xtr, ytr, _, _ = region
    with pytest.raises(ModelError, match=NET_FEATURE):
        make_strategy("stacked-qrf", pretrained).fit(Xtr.assign(**{NET_FEATURE: 1.0}), ytr)


def test_saved_file_keeps_the_network_and_refuses_a_forest_without_its_feature(
    pretrained, region, tmp_path
) -> None:
    Xtr, ytr, Xte, _ = region
    model = make_strategy("stacked-qrf", pretrained, n_estimators=30).fit(Xtr, ytr)
    meta, blobs = model.to_state()
    assert {k.split("/")[0] for k in blobs} == {"net", "forest"}
    # the network inside predicts as the pretrained one did
    loaded = load_model(save_model(model, tmp_path / "s.geesoil"))
    np.testing.assert_allclose(loaded.pretrained.predict_median(Xte), pretrained.predict_median(Xte))
    meta["forest"]["covariates"] = meta["forest"]["covariates"][::-1]
    with pytest.raises(ModelError, match="inconsistent"):
        type(model).from_state(meta, blobs)


def test_auto_considers_stacking(pretrained) -> None:
    assert "stacked-qrf" in AutoModel(pretrained).candidate_names()
    assert "stacked-qrf" not in AutoModel(None, covariates=SPECS).candidate_names()
