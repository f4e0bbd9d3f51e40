"""evaluate(): record schema, no test-fold leakage, learning curves; the ``auto`` strategy's nested selection."""

from __future__ import annotations

import math
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from test_baselines import SPECS, synthetic_region

from geesoil import cv, metrics
from geesoil.errors import GeesoilError, ModelError
from geesoil.evaluate import RECORD_KEYS, evaluate, format_table
from geesoil.model.auto import AutoModel
from geesoil.model.io import load_model, read_metadata, register, save_model

SMALL = {"n_estimators": 40}


def truth(X: pd.DataFrame) -> np.ndarray:
    """The noise-free mean of :func:`synthetic_region`'s SOC (what a perfect transfer model would know)."""
    bio12 = X["bio12"].fillna(650.0)
    log_soc = 1.6 + 0.0015 * (bio12 - 650) - 0.001 * (X["elevation"] - 450) + 0.4 * (X["landcover"] == 1)
    return np.exp(log_soc.to_numpy(float) + 0.25**2 / 2)


@register("test-stub")
class StubStrategy:
    """A stand-in fine-tuning strategy that refuses to predict rows it was trained on (leak detector)."""

    kind = "test-stub"

    def __init__(self, mode: str, covariates: tuple = SPECS) -> None:
        self.mode = mode
        self._covariates = covariates

    @property
    def covariates(self) -> tuple:
        return self._covariates

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> StubStrategy:
        self.fit_rows_ = set(X.index)
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        leaked = self.fit_rows_ & set(X.index)
        assert not leaked, f"predicting {len(leaked)} rows the model was trained on"
        return truth(X) if self.mode == "oracle" else np.full(len(X), self.mean_)

    def predict_interval(self, X: pd.DataFrame, alpha: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
        p = self.predict(X)
        return p * 0.6, p * 1.6

    def to_state(self) -> tuple[dict[str, Any], dict[str, bytes]]:
        return {"mode": self.mode, "mean": self.mean_}, {"dummy": b"x"}

    @classmethod
    def from_state(cls, meta: dict[str, Any], blobs: dict[str, bytes]) -> StubStrategy:
        m = cls(meta["mode"])
        m.mean_, m.fit_rows_ = meta["mean"], set()
        return m


class StubPretrained:
    """Stands in for a pretrained SoilNet: knows the two global covariates (landcover is region-only)."""

    covariates = SPECS[:2]


@pytest.fixture
def stub_finetune(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Install a fake ``geesoil.model.finetune`` whose strategies are the stubs above."""
    mod = types.ModuleType("geesoil.model.finetune")
    strategies = {"finetuned": "oracle stub", "global": "constant stub"}
    calls: list[str] = []

    def make_strategy(
        name: str, pretrained: Any, *, regional_covariates: Any = (), random_state: int = 0, **kw: Any
    ):
        assert isinstance(pretrained, StubPretrained)
        calls.append(name)
        return StubStrategy("oracle" if name == "finetuned" else "constant")

    mod.STRATEGIES = strategies
    mod.make_strategy = make_strategy
    mod.calls = calls
    monkeypatch.setitem(sys.modules, "geesoil.model.finetune", mod)
    return mod


@pytest.fixture(scope="module")
def region() -> tuple[pd.DataFrame, np.ndarray]:
    return synthetic_region(240, seed=5)


def test_records_have_exactly_the_schema(region: tuple) -> None:
    X, y = region
    out = evaluate(
        X[["lon", "lat"]],
        X.drop(columns=["lon", "lat"]),
        y,
        methods=["rf", "qrf"],
        folds=3,
        sizes=[30, "all"],
        repeats=2,
        covariates=SPECS,
        method_params={"rf": SMALL, "qrf": SMALL},
        progress=False,
    )
    recs = out["records"]
    assert len(recs) == 3 * (2 + 1) * 2  # folds x (repeats + all) x methods
    for r in recs:
        assert tuple(r) == RECORD_KEYS
        assert r["method"] in ("rf", "qrf") and r["size"] in (30, "all")
        assert r["n_train"] == (30 if r["size"] == 30 else len(y) - r["n_test"])
        assert all(isinstance(r[k], float) and math.isfinite(r[k]) for k in metrics.METRICS)
    full = [r for r in recs if r["method"] == "rf" and r["size"] == "all"]
    assert sorted(r["fold"] for r in full) == [0, 1, 2]
    assert sum(r["n_test"] for r in full) == len(y)  # every sample scored once per method and size
    summ = {(s["method"], s["size"]): s for s in out["summary"]}
    assert set(summ) == {("rf", 30), ("qrf", 30), ("rf", "all"), ("qrf", "all")}
    rf30 = [r["mae"] for r in recs if r["method"] == "rf" and r["size"] == 30]
    assert summ[("rf", 30)]["mae"] == pytest.approx(np.mean(rf30))
    assert summ[("rf", 30)]["n_records"] == 6
    # more data helps: the learning curve goes down
    assert summ[("rf", "all")]["mae"] < summ[("rf", 30)]["mae"]
    for size in (30, "all"):
        (imp,) = [i for i in out["improvement"] if i["size"] == size]
        best = min(("rf", "qrf"), key=lambda m: summ[(m, size)]["mae"])
        other = ({"rf", "qrf"} - {best}).pop()
        assert (imp["baseline"], imp["method"]) == (best, other)
        assert imp["mae_decrease_pct"] == pytest.approx(
            100 * (summ[(best, size)]["mae"] - summ[(other, size)]["mae"]) / summ[(best, size)]["mae"]
        )
    table = format_table(out)
    assert "rf" in table and "qrf" in table and len(table.splitlines()) == 2 + 4 + 1


def test_evaluate_never_trains_on_test_folds_and_auto_selects_inside(
    region: tuple, stub_finetune: Any
) -> None:
    X, y = region
    out = evaluate(
        X[["lon", "lat"]],
        X,
        y,
        pretrained=StubPretrained(),
        methods=["auto", "finetuned", "global", "rf"],
        folds=3,
        spatial_block_km=20,
        covariates=SPECS,
        method_params={"rf": SMALL, "auto": {"selection_trees": 20, "n_estimators": 40}},
        progress=False,
    )
    # StubStrategy.predict asserts it never sees a training row; auto's inner CV fitted stubs too
    assert stub_finetune.calls.count("finetuned") > 3
    assert out["config"]["regional_covariates"] == ["landcover"]
    summ = {s["method"]: s for s in out["summary"]}
    assert summ["finetuned"]["mae"] < summ["rf"]["mae"] < summ["global"]["mae"]
    # with a transfer model this good, auto must not lose to the regional baseline
    assert summ["auto"]["mae"] <= 1.01 * summ["rf"]["mae"]


def test_spatial_outer_folds_match_cv_module(region: tuple) -> None:
    X, y = region
    out = evaluate(
        X,
        X,
        y,
        methods=["rf"],
        folds=4,
        spatial_block_km=25,
        seed=2,
        covariates=SPECS,
        method_params={"rf": SMALL},
        progress=False,
    )
    folds = cv.spatial_kfold(X["lon"], X["lat"], k=4, block_km=25, seed=2)
    assert [r["n_test"] for r in out["records"]] == [f.test.size for f in folds]


def test_bad_requests_are_user_errors(region: tuple) -> None:
    X, y = region
    with pytest.raises(ModelError, match="pretrained"):
        evaluate(X, X, y, methods=["finetuned"], covariates=SPECS, progress=False)
    with pytest.raises(GeesoilError, match="at least 20"):
        evaluate(X.iloc[:15], X.iloc[:15], y[:15], methods=["rf"], covariates=SPECS, progress=False)
    with pytest.raises(ModelError, match="size"):
        evaluate(X, X, y, methods=["rf"], sizes=["ten"], covariates=SPECS, progress=False)


def test_auto_picks_the_oracle_and_round_trips(region: tuple, stub_finetune: Any, tmp_path: Path) -> None:
    X, y = region
    model = AutoModel(
        StubPretrained(), regional_covariates=SPECS[2:], selection_trees=20, n_estimators=40, stack=False
    ).fit(X, y)
    sel = model.selection_
    assert set(sel["scores_mae"]) == {"finetuned", "global", "rf", "qrf"}
    assert model.choice_ == "finetuned" == min(sel["scores_mae"], key=sel["scores_mae"].get)
    assert sel["inner_folds"] == 3
    path = save_model(model, tmp_path / "auto.geesoil")
    doc = read_metadata(path)
    assert doc["kind"] == "auto" and doc["model"]["selection"]["choice"] == "finetuned"
    again = load_model(path)
    new, _ = synthetic_region(30, seed=9)
    new.index += 10_000  # rows the model has not seen
    np.testing.assert_allclose(again.predict(new), model.predict(new))
    np.testing.assert_allclose(again.predict(new), truth(new))


def test_auto_falls_back_to_a_forest_when_transfer_is_useless(region: tuple, stub_finetune: Any) -> None:
    X, y = region
    stub_finetune.STRATEGIES = {"global": "constant stub"}
    model = AutoModel(StubPretrained(), regional_covariates=SPECS[2:], selection_trees=20, n_estimators=40)
    model.fit(X, y)
    assert model.choice_ in ("rf", "qrf")
    assert model.selection_["scores_mae"]["global"] > model.selection_["scores_mae"][model.choice_]


def test_auto_blend_and_forest_only_round_trip(region: tuple, tmp_path: Path) -> None:
    X, y = region
    Xtr, ytr, Xte = X.iloc[:180], y[:180], X.iloc[180:]
    model = AutoModel(None, covariates=SPECS, selection_trees=20, n_estimators=40).fit(Xtr, ytr)
    assert model.choice_ in ("rf", "qrf")
    again = load_model(save_model(model, tmp_path / "auto.geesoil"))
    np.testing.assert_array_equal(again.predict(Xte), model.predict(Xte))
    lo, hi = again.predict_interval(Xte)
    assert (lo <= again.predict(Xte) + 1e-9).all() and (hi >= again.predict(Xte) - 1e-9).all()


class MedianStub(StubStrategy):
    """An oracle whose ``predict`` is a mean 1.5x its median (like a skewed predictive law): scoring must use
    the median."""

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return 1.5 * self.predict_median(X)

    def predict_median(self, X: pd.DataFrame) -> np.ndarray:
        return super().predict(X)


def test_models_are_scored_by_their_median(region: tuple, stub_finetune: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(stub_finetune, "make_strategy", lambda name, pretrained, **kw: MedianStub("oracle"))
    X, y = region
    out = evaluate(
        X[["lon", "lat"]],
        X,
        y,
        pretrained=StubPretrained(),
        methods=["finetuned"],
        folds=2,
        covariates=SPECS,
        progress=False,
    )
    # each record's MAE is the oracle median's on its test fold, not the 1.5x mean's
    folds = cv.kfold(X["lon"], X["lat"], k=2, seed=0)
    oracle = sorted(float(np.mean(np.abs(truth(X.iloc[f.test]) - y[f.test]))) for f in folds)
    assert sorted(r["mae"] for r in out["records"]) == pytest.approx(oracle)
    assert out["config"]["scored"].startswith("median")


def test_scratch_network_is_evaluated(region: tuple) -> None:
    X, y = region
    out = evaluate(
        X,
        X,
        y,
        methods=["scratch"],
        folds=2,
        covariates=SPECS,
        method_params={"scratch": {"n_members": 1, "max_epochs": 20}},
        progress=False,
    )
    assert [r["method"] for r in out["records"]] == ["scratch", "scratch"]
    assert all(math.isfinite(r["mae"]) and 0 <= r["picp90"] <= 1 for r in out["records"])


def test_select_keeps_the_forest_unless_transfer_clearly_wins() -> None:
    from geesoil.model.auto import select

    rng = np.random.default_rng(0)
    y = rng.gamma(3.0, 5.0, 300)
    forest = y + rng.normal(0, 3.0, 300)
    lucky = y + rng.normal(0, 2.97, 300)  # equal skill: any lead is chance, not worth the switch
    good = y + rng.normal(0, 1.5, 300)  # clearly better
    sel = select(y, {"rf": forest, "global": lucky}, stack=False)
    assert sel["members"] == ["rf"] and sel["gain_se"]["global"] < 1
    sel = select(y, {"rf": forest, "finetuned": good, "global": lucky}, stack=False)
    assert sel["members"] == ["finetuned"] and sel["gain_se"]["finetuned"] > 3
    stacked = select(y, {"rf": forest, "finetuned": good}, stack=True)
    assert stacked["blend"]["members"] == ["finetuned", "rf"]
    # the stack is shrunk halfway towards the forest: the clearly better model gets most of the other half
    weights = dict(zip(stacked["members"], stacked["weights"], strict=True))
    assert set(weights) == {"finetuned", "rf"} and 0.35 < weights["finetuned"] <= 0.5
    assert select(y, {"finetuned": good, "global": lucky})["members"] == ["finetuned"]  # no forest: best MAE
    # between forests qrf is the default; rf must clearly beat it
    assert select(y, {"rf": lucky, "qrf": forest}, stack=False)["members"] == ["qrf"]
    assert select(y, {"rf": good, "qrf": forest}, stack=False)["members"] == ["rf"]
