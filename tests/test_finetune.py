"""Transfer strategies on a synthetic world whose global SOC relationship carries over (slightly shifted) to a region."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from test_model_base import assert_layers_match
from test_model_network import LC_EFFECT, SPECS, make_world

from geesoil.covariates.spec import CovariateSpec
from geesoil.errors import ModelError
from geesoil.model.finetune import STRATEGIES, make_strategy
from geesoil.model.io import load_model, save_model
from geesoil.model.network import GroupBranchNet, SoilNet, smearing_factor

REGIONAL = [CovariateSpec("gamma_k", "other", units="%")]


def make_region(n: int, seed: int, gamma_effect: float = 0.0) -> tuple[pd.DataFrame, np.ndarray]:
    """A 20°×25° region: drier and narrower climate than the globe, the global f with a larger NDVI slope and a
    +0.1 log offset, plus (optionally) a region-only covariate ``gamma_k`` the global model never saw."""
    rng = np.random.default_rng(seed)
    X, _ = make_world(n, seed + 1000)
    X["lon"] = rng.uniform(10, 30, n)
    X["lat"] = rng.uniform(20, 45, n)
    X["bio12"] = X["bio12"] * 0.6 + 200
    X["bio01"] = 27 - 0.45 * X["lat"] - X["elevation"] / 200 + rng.normal(0, 2, n)
    X["ndvi"] = np.clip(0.15 + X["bio12"] / 3000 + rng.normal(0, 0.1, n), 0, 1)
    X["gamma_k"] = rng.normal(1.5, 0.5, n)
    f = (
        2.5
        - 0.04 * X["bio01"]
        + 0.4 * np.log1p(X["bio12"] / 500)
        + 1.2 * X["ndvi"]
        + 0.15 * np.sin(X["elevation"] / 500)
        + LC_EFFECT[X["landcover"].astype(int) - 1]
        + gamma_effect * (X["gamma_k"] - 1.5) / 0.5
    ).to_numpy()
    return X, np.expm1(f + rng.normal(0, 0.3, n))


def mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a - b)))


@pytest.fixture(scope="module")
def pretrained() -> SoilNet:
    X, y = make_world(3000, seed=1)
    return SoilNet(SPECS, n_members=2, max_epochs=40, patience=10, progress=False, random_state=0).fit(X, y)


@pytest.fixture(scope="module")
def region() -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]:
    X, y = make_region(840, seed=0)
    return X.iloc[:40], y[:40], X.iloc[40:], y[40:]


def test_finetuned_beats_scratch_where_the_global_relationship_transfers(pretrained, region) -> None:
    Xtr, ytr, Xte, yte = region
    finetuned = make_strategy("finetuned", pretrained, random_state=0).fit(Xtr, ytr)
    scratch = make_strategy("scratch", pretrained, random_state=0).fit(Xtr, ytr)
    assert scratch.kind == "soilnet" and finetuned.kind == "finetuned"
    mae_ft, mae_scratch = mae(finetuned.predict(Xte), yte), mae(scratch.predict(Xte), yte)
    assert mae_ft < 0.95 * mae_scratch, (mae_ft, mae_scratch)
    # and fine-tuning did not wreck the pretrained knowledge (zero-shot is already good here)
    assert mae_ft < 1.05 * mae(pretrained.predict(Xte), yte)


@pytest.mark.parametrize("name", [n for n in STRATEGIES if n != "scratch"])
def test_every_strategy_fits_predicts_and_round_trips(name, pretrained, region, tmp_path) -> None:
    Xtr, ytr, Xte, _ = region
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GP hyperparameter bounds on pure-noise residuals
        model = make_strategy(name, pretrained, regional_covariates=REGIONAL, random_state=0).fit(Xtr, ytr)
    assert model.kind == name
    pred = model.predict(Xte)
    lo, hi = model.predict_interval(Xte, alpha=0.1)
    assert np.isfinite(pred).all() and (lo >= 0).all() and (lo <= hi).all()
    assert_layers_match(model, Xte)  # the maps' one-pass predictions (the GP's variance included)
    assert model.training_summary_["n"] == 40 and model.training_summary_["pretrained"]["n"] == 3000
    loaded = load_model(save_model(model, tmp_path / f"{name}.geesoil"))
    assert loaded.kind == name and type(loaded) is type(model)
    np.testing.assert_array_equal(loaded.predict(Xte), pred)
    np.testing.assert_array_equal(loaded.predict_interval(Xte)[1], hi)
    uses_regional = name in ("regional-branch", "stacked-qrf")
    expected = [s.name for s in SPECS] + (["gamma_k"] if uses_regional else [])
    assert [s.name for s in loaded.covariates] == expected
    with pytest.raises(ModelError, match="bio12"):
        loaded.check_covariates([n for n in expected if n != "bio12"])


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_fewer_than_20_samples_refused(name, pretrained, region) -> None:
    Xtr, ytr, _, _ = region
    model = make_strategy(name, pretrained, regional_covariates=REGIONAL)
    with pytest.raises(ModelError, match="at least 20"):
        model.fit(Xtr.iloc[:19], ytr[:19])


def test_exactly_20_samples_fine_tune_without_diverging(pretrained, region) -> None:
    Xtr, ytr, Xte, yte = region
    model = make_strategy("finetuned", pretrained, random_state=2).fit(Xtr.iloc[:20], ytr[:20])
    assert mae(model.predict(Xte), yte) < 1.3 * mae(pretrained.predict(Xte), yte)


def test_global_strategy_keeps_predictions_and_recalibrates(pretrained, region) -> None:
    Xtr, ytr, Xte, _ = region
    model = make_strategy("global", pretrained).fit(Xtr, ytr)
    np.testing.assert_array_equal(model.predict_median(Xte), pretrained.predict_median(Xte))
    assert model.calibration_.n == 40
    # the mean's smearing comes from the regional residuals of the unchanged ensemble, not the global ones
    resid = np.log1p(ytr) - np.log1p(pretrained.predict_median(Xtr))
    assert model.target_["smearing"] == pytest.approx(smearing_factor(resid))
    assert model.target_["smearing"] != pretrained.target_["smearing"]
    ratio = model.predict(Xte) / pretrained.predict(Xte)
    assert np.all(ratio != 1.0)
    assert not np.array_equal(model.predict_interval(Xte)[1], pretrained.predict_interval(Xte)[1])


def test_fine_tuning_leaves_the_pretrained_model_untouched(pretrained, region) -> None:
    Xtr, ytr, Xte, _ = region
    before = pretrained.predict(Xte)
    make_strategy("discriminative", pretrained, random_state=0).fit(Xtr, ytr)
    np.testing.assert_array_equal(pretrained.predict(Xte), before)


def test_frozen_branches_stay_frozen(pretrained, region) -> None:
    Xtr, ytr, _, _ = region
    model = make_strategy("discriminative", pretrained, freeze_branches=True, random_state=0).fit(Xtr, ytr)
    for new, old in zip(model.nets_, pretrained.nets_, strict=True):
        for a, b in zip(new.branches.parameters(), old.branches.parameters(), strict=True):
            assert torch.equal(a, b)
        assert not torch.equal(new.head[0].weight, old.head[0].weight)


def test_new_branch_starts_with_the_pretrained_function(pretrained, region) -> None:
    Xtr, _, _, _ = region
    net: GroupBranchNet = copy.deepcopy(pretrained.nets_[0])
    data = pretrained.encoder_.transform(Xtr)
    xc, xk = torch.as_tensor(data.cont), torch.as_tensor(data.cat)
    before = net(xc, xk)
    from geesoil.model.features import GroupLayout

    net.add_branch(GroupLayout("regional", (xc.shape[1], xc.shape[1] + 2)))
    extra = torch.randn(xc.shape[0], 2)
    torch.testing.assert_close(net(torch.cat([xc, extra], 1), xk), before)


def test_regional_branch_learns_a_region_only_covariate(pretrained) -> None:
    X, y = make_region(700, seed=3, gamma_effect=0.35)
    Xtr, ytr, Xte, yte = X.iloc[:200], y[:200], X.iloc[200:], y[200:]
    plain = make_strategy("finetuned", pretrained, random_state=0).fit(Xtr, ytr)
    branch = make_strategy("regional-branch", pretrained, regional_covariates=REGIONAL, random_state=0).fit(
        Xtr, ytr
    )
    assert mae(branch.predict(Xte), yte) < 0.95 * mae(plain.predict(Xte), yte)


def test_regional_branch_is_reproducible_whatever_torch_drew_before(pretrained) -> None:
    X, y = make_region(80, seed=5, gamma_effect=0.35)

    def fit() -> np.ndarray:
        model = make_strategy(
            "regional-branch", pretrained, regional_covariates=REGIONAL, random_state=3, max_epochs=5
        )
        return model.fit(X, y).predict(X)

    torch.manual_seed(1)
    first = fit()
    torch.rand(1000)  # another state of torch's global generator
    np.testing.assert_array_equal(fit(), first)


def test_recentring_puts_the_start_on_the_regions_level(pretrained) -> None:
    """A region whose SOC sits at 1.6× the global relationship: re-centring removes the level error at the start
    and the fine-tuned model keeps it removed on new sites."""
    from geesoil.model.finetune import recentre_output
    from geesoil.model.train import to_tensors

    X, y = make_region(600, seed=11)
    y = np.expm1(np.log1p(y) + 0.5)
    Xtr, ytr, Xte, yte = X.iloc[:30], y[:30], X.iloc[30:], y[30:]
    net = copy.deepcopy(pretrained.nets_[0])
    data = pretrained.encoder_.transform(Xtr)
    z = (np.log1p(ytr) - pretrained.target_["mean"]) / pretrained.target_["std"]
    batch = to_tensors(data.cont, data.cat, z, torch.device("cpu"))
    shift = recentre_output(net, batch)
    assert shift > 0.3  # the region is 0.5 log units above the global level
    with torch.no_grad():
        assert abs(float((batch[2] - net(batch[0], batch[1])).mean())) < 1e-5

    def level(model) -> float:
        return float(np.mean(np.log1p(yte) - np.log1p(model.predict_median(Xte))))

    centred = make_strategy("finetuned", pretrained, recentre=True, random_state=0).fit(Xtr, ytr)
    assert abs(level(centred)) < 0.15 < abs(level(pretrained))
    assert load_model(save_model(centred, "/tmp/_rc.geesoil")).recentre is True


def test_strategy_arguments_are_checked(pretrained) -> None:
    with pytest.raises(ModelError, match="unknown fine-tuning strategy"):
        make_strategy("magic", pretrained)
    X, y = make_region(60, seed=4)
    with pytest.raises(ModelError, match="regional_covariates"):
        make_strategy("regional-branch", pretrained).fit(X, y)
    with pytest.raises(ModelError, match="already used"):
        make_strategy("regional-branch", pretrained, regional_covariates=[SPECS[0]]).fit(X, y)
    with pytest.raises(ModelError, match="fitted pretrained"):
        make_strategy("finetuned", SoilNet(SPECS))


# ------------------------------------------------------------------------------------------- real data (slow)
@pytest.fixture(scope="module")
def real_world(soil_dir, coarse_pack) -> tuple[pd.DataFrame, np.ndarray, list[CovariateSpec]]:
    """WISE + ISIS + AfSP topsoil (0-30 cm, de-duplicated by location) with the coarse global pack sampled."""
    from geesoil.covariates.open import open_source
    from geesoil.samples import load_samples, pool_sources

    frames = []
    for name in ("wise", "isis", "afsp"):
        f = load_samples(soil_dir / f"{name}.parquet", target="oc_gkg", depth=(0, 30))
        f["source"] = name.upper()
        frames.append(f)
    pool = pool_sources(frames).reset_index(drop=True)
    src = open_source(coarse_pack)
    X = pd.concat([src.sample(pool[["lon", "lat"]]).reset_index(drop=True), pool[["lon", "lat"]]], axis=1)
    return X, pool["oc_gkg"].to_numpy(float), list(src.specs)


@pytest.mark.slow
def test_real_pretraining_and_edgeroi_fine_tuning(real_world, soil_dir, coarse_pack, edgeroi_pack) -> None:
    from geesoil.covariates.open import open_source
    from geesoil.model.train import default_groups, member_splits
    from geesoil.samples import load_samples

    X, y, specs = real_world
    groups = default_groups(X)
    ((tr, te),) = member_splits(groups, 1, val_fraction=0.2, rng=np.random.default_rng(42))
    model = SoilNet(specs, n_members=3, max_epochs=40, patience=10, progress=False).fit(X.iloc[tr], y[tr])
    pred = model.predict_median(X.iloc[te])
    lo, hi = model.predict_interval(X.iloc[te])
    # held-out sites: clearly better than the training median, intervals near their nominal 90 %
    assert mae(pred, y[te]) < 0.85 * mae(np.median(y[tr]), y[te])
    assert 0.85 <= np.mean((y[te] >= lo) & (y[te] <= hi)) <= 0.95

    e = load_samples(soil_dir / "edgeroi.parquet", target="oc_gkg", depth=(0, 30)).reset_index(drop=True)
    glob, reg = open_source(coarse_pack), open_source(edgeroi_pack)
    pts = e[["lon", "lat"]]
    Xe = pd.concat(
        [glob.sample(pts).reset_index(drop=True), reg.sample(pts).reset_index(drop=True), pts], axis=1
    )
    ye = e["oc_gkg"].to_numpy(float)
    perm = np.random.default_rng(0).permutation(len(Xe))
    fit_rows, test_rows = perm[:100], perm[150:]
    zero_shot = mae(model.predict(Xe.iloc[test_rows]), ye[test_rows])
    for name in ("finetuned", "regional-branch"):
        m = make_strategy(name, model, regional_covariates=reg.specs, random_state=0)
        m.fit(Xe.iloc[fit_rows], ye[fit_rows])
        assert mae(m.predict(Xe.iloc[test_rows]), ye[test_rows]) < zero_shot, name
