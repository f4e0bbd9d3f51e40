"""RF/QRF baselines: sensible accuracy and calibrated intervals, exact model-file round trip, hostile files refused."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio

from geesoil import metrics
from geesoil.baselines import QuantileForestSoil, RandomForestSoil, load_skops
from geesoil.covariates.spec import CovariateSpec
from geesoil.errors import ModelError
from geesoil.model.io import load_model, read_metadata, save_model

SPECS = (
    CovariateSpec("elevation", "topo", units="m"),
    CovariateSpec("bio12", "climate", units="mm/yr"),
    CovariateSpec("landcover", "landcover", kind="categorical", classes={1: "forest", 2: "crop", 3: "grass"}),
)


def synthetic_region(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """A ~100 km region: SOC (g/kg, log-normal) rising with rainfall, falling with elevation, higher under forest."""
    rng = np.random.default_rng(seed)
    lon = rng.uniform(149.3, 150.3, n)
    lat = rng.uniform(-30.8, -29.9, n)
    elevation = 250 + 400 * (lat + 30.8) + rng.normal(0, 30, n)
    bio12 = 500 + 300 * (lon - 149.3) + rng.normal(0, 40, n)
    landcover = rng.choice([1.0, 2.0, 3.0], n, p=[0.3, 0.5, 0.2])
    log_soc = 1.6 + 0.0015 * (bio12 - 650) - 0.001 * (elevation - 450) + 0.4 * (landcover == 1)
    y = np.exp(log_soc + rng.normal(0, 0.25, n))
    bio12[rng.random(n) < 0.03] = np.nan  # a few covariate gaps, as at coastal pixels
    X = pd.DataFrame({"lon": lon, "lat": lat, "elevation": elevation, "bio12": bio12, "landcover": landcover})
    return X, y


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]:
    X, y = synthetic_region(900)
    return X.iloc[:400], y[:400], X.iloc[400:].reset_index(drop=True), y[400:]


@pytest.mark.parametrize("cls", [RandomForestSoil, QuantileForestSoil])
def test_forest_beats_the_mean_and_intervals_are_calibrated(cls: type, data: tuple) -> None:
    Xtr, ytr, Xte, yte = data
    model = cls(SPECS, n_estimators=100, random_state=0).fit(Xtr, ytr)
    pred = model.predict(Xte)
    assert metrics.mae(yte, pred) < 0.8 * metrics.mae(yte, np.full_like(yte, np.median(ytr)))
    assert metrics.ccc(yte, pred) > 0.5
    lo, hi = model.predict_interval(Xte, alpha=0.1)
    assert (lo >= 0).all() and (lo <= pred + 1e-9).all() and (hi >= pred - 1e-9).all()
    assert 0.84 <= metrics.picp(yte, lo, hi) <= 0.97
    lo50, hi50 = model.predict_interval(Xte, alpha=0.5)
    assert 0.4 <= metrics.picp(yte, lo50, hi50) <= 0.62
    assert metrics.mean_width(lo50, hi50) < metrics.mean_width(lo, hi)
    assert (model.predict_std(Xte) >= 0).all()


def test_qrf_mean_of_a_featureless_forest_is_the_training_mean() -> None:
    # identical rows: no tree can split, so every tree's one leaf draws from all of y and the conditional
    # distribution is y itself; y is right-skewed, so its mean and median are far apart
    rng = np.random.default_rng(1)
    y = np.exp(rng.normal(2.0, 0.8, 300))
    X = pd.DataFrame(
        {"lon": 150.0, "lat": -30.0, "elevation": 400.0, "bio12": 600.0, "landcover": 2.0}, index=range(300)
    )
    model = QuantileForestSoil(SPECS, n_estimators=2000, random_state=0).fit(X, y)
    mean, median = model.predict_mean(X.iloc[:3]), model.predict_median(X.iloc[:3])
    se = y.std() / np.sqrt(model.n_estimators)  # one training value drawn per tree
    assert np.abs(mean - y.mean()).max() < 4 * se
    assert np.abs(median - np.median(y)).max() < 0.1 * np.median(y)
    assert (mean - median).min() > 0.2 * np.median(y)
    np.testing.assert_array_equal(median, model.predict(X.iloc[:3]))


def test_qrf_mean_tracks_the_mean_of_skewed_soc_where_the_median_falls_short() -> None:
    X, y = synthetic_region(1400, seed=4)
    y = y * np.exp(np.random.default_rng(5).normal(0, 0.6, y.size))  # much more right skew
    model = QuantileForestSoil(SPECS, n_estimators=200, random_state=0).fit(X.iloc[:900], y[:900])
    Xte, yte = X.iloc[900:], y[900:]
    mean, median = model.predict_mean(Xte), model.predict_median(Xte)
    assert mean.shape == median.shape == (len(Xte),) and np.isfinite(mean).all()
    assert (mean > median).mean() > 0.8
    # the area average that stocks need: the mean map gets it, the median map is biased low
    assert abs(mean.mean() - yte.mean()) < 0.5 * abs(median.mean() - yte.mean())


def test_features_include_coordinates_and_one_hot_classes() -> None:
    X, y = synthetic_region(60)
    model = RandomForestSoil(SPECS, n_estimators=10).fit(X, y)
    names = model.feature_names_
    assert names[:5] == ["elevation", "bio12", "landcover=1", "landcover=2", "landcover=3"]
    assert {"lon", "lat"} <= set(names) and sum(n.startswith("oblique") for n in names) == 4
    X2 = X.iloc[:3].copy()
    X2["landcover"] = [1.0, 9.0, np.nan]  # unseen code and gap -> all-zero indicators
    F = model._features(X2)
    assert F[:, 2:5].tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 0]]
    codes = RandomForestSoil(SPECS, n_estimators=10, categorical="codes", oblique_angles=()).fit(X, y)
    assert codes.feature_names_ == ["elevation", "bio12", "landcover", "lon", "lat"]


def test_missing_covariate_is_a_clear_error(data: tuple) -> None:
    Xtr, ytr, Xte, _ = data
    model = QuantileForestSoil(SPECS, n_estimators=10).fit(Xtr, ytr)
    with pytest.raises(ModelError, match="bio12"):
        model.predict(Xte.drop(columns=["bio12"]))


@pytest.mark.parametrize("cls", [RandomForestSoil, QuantileForestSoil])
def test_model_file_round_trip_gives_identical_predictions(cls: type, data: tuple, tmp_path: Path) -> None:
    Xtr, ytr, Xte, _ = data
    model = cls(SPECS, n_estimators=30, random_state=3).fit(Xtr, ytr)
    path = save_model(model, tmp_path / "m.geesoil")
    doc = read_metadata(path)
    assert doc["kind"] == cls.kind
    assert doc["model"]["params"]["n_estimators"] == 30
    assert [c["name"] for c in doc["model"]["covariates"]] == ["elevation", "bio12", "landcover"]
    again = load_model(path)
    assert type(again) is cls
    assert again.covariates == model.covariates
    np.testing.assert_array_equal(again.predict(Xte), model.predict(Xte))
    for a, b in zip(again.predict_interval(Xte), model.predict_interval(Xte), strict=True):
        np.testing.assert_array_equal(a, b)


class Boom:
    """An object whose unpickling/unskopsing has a side effect: what an attacker would plant."""

    marker = ""

    def __init__(self) -> None:
        self.path = Boom.marker

    def __setstate__(self, state: dict) -> None:
        Path(state["path"]).write_text("executed")


def _replace_blob(src: Path, dst: Path, blob: bytes) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, blob if name == "blobs/forest.skops" else zin.read(name))
    return dst


def test_malicious_skops_object_is_refused_without_executing(data: tuple, tmp_path: Path) -> None:
    Xtr, ytr, _, _ = data
    marker = tmp_path / "pwned"
    Boom.marker = str(marker)
    payload = sio.dumps(Boom())
    # the payload is live: blindly trusting what the file asks for runs the attacker's code
    sio.loads(payload, trusted=sio.get_untrusted_types(data=payload))
    assert marker.read_text() == "executed"
    marker.unlink()

    good = save_model(RandomForestSoil(SPECS, n_estimators=5).fit(Xtr, ytr), tmp_path / "good.geesoil")
    bad = _replace_blob(good, tmp_path / "bad.geesoil", payload)
    with pytest.raises(ModelError, match="untrusted types .*Boom"):
        load_model(bad)
    assert not marker.exists()


def test_function_reference_in_skops_is_refused() -> None:
    import os

    payload = sio.dumps({"run": os.system})
    with pytest.raises(ModelError, match="system"):
        load_skops(payload, "test blob")


class _PickleBomb:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (Path.write_text, (Path(self.path), "executed"))


def test_pickle_payload_is_refused_without_executing(data: tuple, tmp_path: Path) -> None:
    Xtr, ytr, _, _ = data
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_PickleBomb(str(marker)))
    pickle.loads(payload)  # live: plain unpickling would run it
    assert marker.exists()
    marker.unlink()
    good = save_model(QuantileForestSoil(SPECS, n_estimators=5).fit(Xtr, ytr), tmp_path / "good.geesoil")
    with pytest.raises(ModelError, match="not a skops archive"):
        load_model(_replace_blob(good, tmp_path / "bad.geesoil", payload))
    assert not marker.exists()


def test_tampered_tree_indices_are_refused(data: tuple, tmp_path: Path) -> None:
    """A trusted type with hostile content: child indices pointing outside the tree."""
    Xtr, ytr, _, _ = data
    good = save_model(RandomForestSoil(SPECS, n_estimators=2).fit(Xtr, ytr), tmp_path / "good.geesoil")
    with zipfile.ZipFile(good) as zf:
        blob = zf.read("blobs/forest.skops")
    # rewrite the first tree's nodes array inside the skops archive
    zin = zipfile.ZipFile(io.BytesIO(blob))
    forest = load_skops(blob, "test")
    nodes = forest.estimators_[0].tree_.__getstate__()["nodes"].copy()
    nodes["left_child"][0] = 10**6
    buf = io.BytesIO()
    np.save(buf, nodes, allow_pickle=False)
    target = _find_array_file(zin, forest.estimators_[0].tree_.__getstate__()["nodes"])
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, buf.getvalue() if name == target else zin.read(name))
    with pytest.raises(ModelError, match="child index out of range"):
        load_model(_replace_blob(good, tmp_path / "bad.geesoil", out.getvalue()))


def _find_array_file(zin: zipfile.ZipFile, arr: np.ndarray) -> str:
    for name in zin.namelist():
        if name.endswith(".npy"):
            got = np.load(io.BytesIO(zin.read(name)), allow_pickle=False)
            if got.dtype == arr.dtype and got.shape == arr.shape and np.array_equal(got, arr):
                return name
    raise AssertionError("tree nodes array not found in the skops archive")
