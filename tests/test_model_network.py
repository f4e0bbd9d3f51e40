"""SoilNet: encoding, training, determinism, intervals and checkpoints on a synthetic SOC world with known truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from geesoil.covariates.spec import CovariateSpec
from geesoil.errors import ModelError
from geesoil.model.conformal import conformal_quantile
from geesoil.model.features import UNKNOWN, FeatureEncoder
from geesoil.model.io import load_model, read_metadata, save_model
from geesoil.model.network import GroupBranchNet, SoilNet
from geesoil.model.train import default_groups, member_splits

SPECS = [
    CovariateSpec("elevation", "topo", units="m"),
    CovariateSpec("slope", "topo", units="deg"),
    CovariateSpec("bio01", "climate", units="degC"),
    CovariateSpec("bio12", "climate", units="mm/yr"),
    CovariateSpec("ndvi", "vegetation"),
    CovariateSpec("treecover", "vegetation", units="%"),
    CovariateSpec(
        "landcover", "landcover", kind="categorical", classes={1: "forest", 2: "crop", 3: "grass", 4: "bare"}
    ),
]
LC_EFFECT = np.array([0.4, -0.2, 0.1, -0.6])


def make_world(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Covariates with realistic ranges and SOC (g/kg) = exp(smooth f(covariates) + N(0, 0.3²)) − 1."""
    rng = np.random.default_rng(seed)
    lon, lat = rng.uniform(-180, 180, n), rng.uniform(-55, 70, n)
    elevation = rng.gamma(2.0, 400.0, n)
    slope = rng.gamma(1.5, 3.0, n)
    bio01 = 27 - 0.45 * np.abs(lat) - elevation / 200 + rng.normal(0, 2, n)
    bio12 = rng.gamma(3.0, 300.0, n)
    ndvi = np.clip(0.15 + bio12 / 3000 + rng.normal(0, 0.1, n), 0, 1)
    treecover = np.clip(100 * ndvi + rng.normal(0, 10, n), 0, 100)
    landcover = rng.integers(1, 5, n).astype(float)
    f = (
        2.4
        - 0.04 * bio01
        + 0.4 * np.log1p(bio12 / 500)
        + 1.0 * ndvi
        + 0.15 * np.sin(elevation / 500)
        + LC_EFFECT[landcover.astype(int) - 1]
    )
    y = np.expm1(f + rng.normal(0, 0.3, n))
    X = pd.DataFrame(
        {
            "elevation": elevation,
            "slope": slope,
            "bio01": bio01,
            "bio12": bio12,
            "ndvi": ndvi,
            "treecover": treecover,
            "landcover": landcover,
            "lon": lon,
            "lat": lat,
        }
    )
    return X, y


FAST = {"n_members": 2, "max_epochs": 25, "patience": 10, "progress": False, "device": "cpu"}


@pytest.fixture(scope="module")
def world() -> tuple[pd.DataFrame, np.ndarray]:
    return make_world(1500, seed=1)


@pytest.fixture(scope="module")
def fitted(world: tuple[pd.DataFrame, np.ndarray]) -> SoilNet:
    X, y = world
    return SoilNet(SPECS, **FAST, random_state=3).fit(X, y)


def test_encoder_imputes_mean_flags_missing_and_maps_unseen_classes() -> None:
    X, _ = make_world(200, seed=2)
    enc = FeatureEncoder(SPECS, location=None).fit(X)
    Xq = X.iloc[:4].copy()
    Xq.loc[Xq.index[0], "bio12"] = np.nan
    Xq.loc[Xq.index[1], "landcover"] = 99.0  # never seen in training
    Xq.loc[Xq.index[2], "landcover"] = np.nan
    out = enc.transform(Xq)
    (climate,) = [g for g in enc.layout_ if g.name == "climate"]
    start = climate.cont[0]
    # climate block: [z(bio01), z(bio12), miss(bio01), miss(bio12)]
    assert out.cont[0, start + 1] == 0.0  # imputed with the training mean → z = 0
    assert out.cont[0, start + 3] == 1.0 and out.cont[1, start + 3] == 0.0
    assert np.isfinite(out.cont).all()
    (lc,) = [g for g in enc.layout_ if g.name == "landcover"]
    assert lc.vocab == (5,)  # four seen classes + the unknown slot
    codes = out.cat[:, lc.cat[0]]
    assert codes[1] == UNKNOWN and codes[2] == UNKNOWN
    assert codes[3] == int(X["landcover"].iloc[3])  # classes 1..4 sit at vocabulary positions 1..4


def test_groups_become_branches_and_location_has_its_own(fitted: SoilNet) -> None:
    names = [g.name for g in fitted.encoder_.layout_]
    assert names == ["topo", "climate", "vegetation", "landcover", "location"]
    net = fitted.nets_[0]
    assert isinstance(net, GroupBranchNet) and len(net.branches) == 5
    assert net.head[0].in_features == 5 * 16


def test_fit_predict_and_interval_shapes(fitted: SoilNet, world: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = world
    pred = fitted.predict(X.iloc[:50])
    lo, hi = fitted.predict_interval(X.iloc[:50], alpha=0.1)
    std = fitted.predict_std(X.iloc[:50])
    assert pred.shape == lo.shape == hi.shape == std.shape == (50,)
    assert (lo >= 0).all() and (lo <= hi).all() and (std > 0).all()
    median = fitted.predict_median(X.iloc[:50])
    assert (median < pred).all() and (lo <= median).all() and (median <= hi).all()  # smearing factor > 1
    lo80, hi80 = fitted.predict_interval(X.iloc[:50], alpha=0.2)
    assert (hi80 - lo80 <= hi - lo + 1e-9).all()  # narrower for a lower confidence level
    summary = fitted.training_summary_
    assert summary["n"] == len(X) and len(summary["bbox"]) == 4
    assert fitted.metrics_["validation"]["mae"] > 0


def test_nan_inputs_give_finite_predictions(fitted: SoilNet, world: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, _ = world
    Xq = X.iloc[:20].copy()
    Xq.loc[Xq.index[:10], "bio12"] = np.nan
    Xq.loc[Xq.index[5:15], "ndvi"] = np.nan
    Xq.loc[Xq.index[::2], "landcover"] = np.nan
    pred = fitted.predict(Xq)
    lo, hi = fitted.predict_interval(Xq)
    assert np.isfinite(pred).all() and np.isfinite(lo).all() and np.isfinite(hi).all()


def test_unseen_class_is_treated_as_unknown(fitted: SoilNet, world: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, _ = world
    a, b = X.iloc[:30].copy(), X.iloc[:30].copy()
    a["landcover"] = 17.0
    b["landcover"] = np.nan
    pa, pb = fitted.predict(a), fitted.predict(b)
    assert np.isfinite(pa).all()
    np.testing.assert_array_equal(pa, pb)


def test_missing_columns_are_named(fitted: SoilNet, world: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, _ = world
    with pytest.raises(ModelError, match="bio12.*ndvi|ndvi.*bio12"):
        fitted.predict(X.drop(columns=["bio12", "ndvi"]))


def test_checkpoint_roundtrip_and_covariate_check(fitted: SoilNet, world, tmp_path) -> None:
    X, _ = world
    path = save_model(fitted, tmp_path / "global.geesoil")
    meta = read_metadata(path)["model"]
    assert meta["encoder"]["mean"]["bio01"] == pytest.approx(X["bio01"].mean())
    assert meta["training_summary"]["n"] == len(X)
    loaded = load_model(path)
    assert isinstance(loaded, SoilNet) and loaded.kind == "soilnet"
    assert [s.name for s in loaded.covariates] == [s.name for s in SPECS]
    assert loaded.covariates[-1].classes == SPECS[-1].classes
    np.testing.assert_array_equal(loaded.predict(X.iloc[:100]), fitted.predict(X.iloc[:100]))
    for a, b in zip(
        loaded.predict_interval(X.iloc[:100]), fitted.predict_interval(X.iloc[:100]), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    loaded.check_covariates([s.name for s in SPECS] + ["extra"])
    with pytest.raises(ModelError) as err:
        loaded.check_covariates(["elevation", "slope", "bio01", "ndvi", "treecover"])
    assert "bio12" in str(err.value) and "landcover" in str(err.value) and "elevation" not in str(err.value)


def test_same_seed_same_predictions_other_seed_differs(world) -> None:
    X, y = world
    Xs, ys = X.iloc[:400], y[:400]
    params = {**FAST, "max_epochs": 8}
    a = SoilNet(SPECS, **params, random_state=11).fit(Xs, ys).predict(X.iloc[-50:])
    b = SoilNet(SPECS, **params, random_state=11).fit(Xs, ys).predict(X.iloc[-50:])
    c = SoilNet(SPECS, **params, random_state=12).fit(Xs, ys).predict(X.iloc[-50:])
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_intervals_cover_about_90_percent_on_new_sites() -> None:
    X, y = make_world(3000, seed=5)
    Xt, yt = make_world(2000, seed=6)
    model = SoilNet(SPECS, n_members=3, max_epochs=40, patience=10, progress=False, random_state=0).fit(X, y)
    lo, hi = model.predict_interval(Xt, alpha=0.1)
    coverage = np.mean((yt >= lo) & (yt <= hi))
    assert 0.86 <= coverage <= 0.95
    pred = model.predict(Xt)
    # learned something real: far better than predicting the training mean, and mean-unbiased after smearing
    assert np.mean(np.abs(pred - yt)) < 0.8 * np.mean(np.abs(y.mean() - yt))
    assert abs(pred.mean() - yt.mean()) < 0.08 * yt.mean()


def test_refuses_too_few_samples_and_bad_targets(world) -> None:
    X, y = world
    with pytest.raises(ModelError, match="at least 20"):
        SoilNet(SPECS, **FAST).fit(X.iloc[:19], y[:19])
    bad = y[:100].copy()
    bad[3] = -1.0
    with pytest.raises(ModelError, match="negative"):
        SoilNet(SPECS, **FAST).fit(X.iloc[:100], bad)
    bad[3] = np.nan
    with pytest.raises(ModelError, match="missing"):
        SoilNet(SPECS, **FAST).fit(X.iloc[:100], bad)
    with pytest.raises(ModelError, match="window"):
        SoilNet(SPECS, **FAST, window=1).fit(X.iloc[:100], y[:100])


def test_location_can_be_switched_off(world) -> None:
    X, y = world
    model = SoilNet(SPECS, **{**FAST, "max_epochs": 5}, location=None).fit(
        X.drop(columns=["lon", "lat"]).iloc[:300], y[:300]
    )
    assert "location" not in [g.name for g in model.encoder_.layout_]
    assert np.isfinite(model.predict(X.drop(columns=["lon", "lat"]).iloc[:10])).all()


def test_validation_splits_never_split_a_site() -> None:
    rng = np.random.default_rng(0)
    lon = np.repeat(rng.uniform(0, 10, 60), 3)  # 60 sites, 3 horizons/duplicates each
    lat = np.repeat(rng.uniform(0, 10, 60), 3)
    g = default_groups(pd.DataFrame({"lon": lon + 1e-4, "lat": lat}))
    assert np.unique(g).size == 60
    for mode in ("random", "folds"):
        splits = member_splits(g, 5, val_fraction=0.2, rng=np.random.default_rng(1), mode=mode)
        for tr, va in splits:
            assert not set(g[tr]) & set(g[va])
            assert 0.1 < va.size / g.size < 0.35
    folds = member_splits(g, 5, val_fraction=0.2, rng=np.random.default_rng(1), mode="folds")
    assert np.array_equal(np.sort(np.concatenate([va for _, va in folds])), np.arange(g.size))


def test_conformal_quantile_is_the_finite_sample_rank() -> None:
    scores = np.arange(1, 20, dtype=float)  # n = 19: ceil(20 * 0.9) = 18th smallest
    assert conformal_quantile(scores, 0.1) == 18.0
    assert conformal_quantile(scores, 0.01) == 19.0  # capped at the largest


def test_state_dict_loads_with_weights_only(fitted: SoilNet) -> None:
    import io

    _, blobs = fitted.to_state()
    tensors = torch.load(io.BytesIO(blobs["weights.pt"]), weights_only=True)
    assert any(k.startswith("m1.head") for k in tensors)


@pytest.mark.parametrize("n, epochs", [(100, 10), (30, 1), (30, 3)])
def test_few_steps_of_training_do_not_break_the_schedule(n: int, epochs: int) -> None:
    # one batch x 10 epochs used to make OneCycleLR divide by zero (a warm-up phase shorter than one step)
    rng = np.random.default_rng(1)
    X = pd.DataFrame(
        {"a": rng.normal(size=n), "lon": rng.uniform(140, 150, n), "lat": rng.uniform(-30, -20, n)}
    )
    y = np.exp(1 + 0.5 * X["a"].to_numpy() + rng.normal(0, 0.2, n))
    model = SoilNet([CovariateSpec("a", "topo")], n_members=1, max_epochs=epochs, progress=False).fit(X, y)
    assert np.isfinite(model.predict(X)).all()
