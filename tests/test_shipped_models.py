"""The pretrained models shipped in assets/models: they load, match their covariate source, predict sensibly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from geesoil.covariates.local import LocalPackSource
from geesoil.model.io import load_model, read_metadata

MODELS = Path(__file__).resolve().parents[1] / "assets" / "models"
SHIPPED = ("global-coarse-v1", "global-starter-v1")

# Hand-picked places (lon, lat): SOC in the 0-30 cm topsoil is a few g/kg in the hyper-arid Sahara and tens of
# g/kg under cool, humid grassland and forest (e.g. Irish grassland topsoils are ~30-60 g/kg).
SAHARA = (10.0, 25.0)  # Tassili / Fezzan, Algeria-Libya
IRELAND = (-8.0, 53.0)  # central Ireland
AMAZON = (-62.0, -3.0)  # Amazon rainforest near Manaus
PLACES = pd.DataFrame(
    [SAHARA, IRELAND, AMAZON], columns=["lon", "lat"], index=["sahara", "ireland", "amazon"]
)


def _starter_pack() -> Path:
    from geesoil.covariates.open import cache_dir
    from geesoil.covariates.starter import pack_is_current

    folder = cache_dir() / "starter-pack"
    if not pack_is_current(folder):
        pytest.skip(
            "the starter pack is not built in the user cache (run 'geesoil covariates list --source starter')"
        )
    return folder


def _source(name: str, coarse_pack: Path) -> LocalPackSource:
    return LocalPackSource(coarse_pack if name == "global-coarse-v1" else _starter_pack())


def _source_names(name: str, coarse_pack: Path) -> set[str]:
    """Covariate names the matching source provides (read from its manifest; the starter's needs no build)."""
    if name == "global-coarse-v1":
        doc = json.loads((coarse_pack / "pack.json").read_text())
    else:
        from geesoil.covariates.starter import pack_manifest

        doc = pack_manifest()
    return {c["name"] for c in doc["covariates"]}


@pytest.fixture(scope="module", params=SHIPPED)
def shipped(request: pytest.FixtureRequest) -> tuple[str, object]:
    path = MODELS / f"{request.param}.geesoil"
    assert path.is_file(), f"{path} is missing; run benchmarks/pretrain_models.py"
    return request.param, load_model(path)


def test_shipped_model_is_a_small_pretrained_soilnet(shipped: tuple[str, object]) -> None:
    name, model = shipped
    path = MODELS / f"{name}.geesoil"
    doc = read_metadata(path)
    assert doc["kind"] == "soilnet" and model.kind == "soilnet"
    assert path.stat().st_size < 5_000_000
    assert len(model.nets_) >= 3
    summary = doc["model"]["training_summary"]
    assert summary["n"] > 10_000  # pooled WISE + ISIS + AfSP, 0-30 cm
    assert set(summary["sources"]) <= {"WISE", "ISIS", "AfSP"}


def test_metadata_covariates_are_provided_by_the_matching_source(
    shipped: tuple[str, object], coarse_pack: Path
) -> None:
    name, model = shipped
    names = [c.name for c in model.covariates]
    assert names
    model.check_covariates(_source_names(name, coarse_pack))  # raises ModelError naming any missing covariate
    stored = [c["name"] for c in read_metadata(MODELS / f"{name}.geesoil")["model"]["encoder"]["covariates"]]
    assert stored == names


def test_predictions_at_known_places_are_plausible(shipped: tuple[str, object], coarse_pack: Path) -> None:
    name, model = shipped
    src = _source(name, coarse_pack)
    X = src.sample(PLACES.reset_index(drop=True), [c.name for c in model.covariates])
    X["lon"], X["lat"] = PLACES["lon"].to_numpy(), PLACES["lat"].to_numpy()
    pred = pd.Series(model.predict(X), index=PLACES.index)
    lo, hi = model.predict_interval(X, alpha=0.1)
    assert np.isfinite(pred).all() and (pred > 0).all() and (pred < 300).all()
    assert (lo <= pred.to_numpy() + 1e-9).all() and (pred.to_numpy() <= hi + 1e-9).all()
    assert pred["sahara"] < 10.0
    assert pred["ireland"] > 2 * pred["sahara"]
    assert pred["amazon"] > pred["sahara"]


def test_model_card_names_covariates_and_held_out_regions(shipped: tuple[str, object]) -> None:
    name, model = shipped
    card = MODELS / f"{name}.md"
    assert card.is_file(), f"model card {card} is missing"
    text = card.read_text()
    for c in model.covariates:
        assert f"`{c.name}`" in text, f"model card does not name covariate {c.name}"
    for region in ("Edgeroi", "Malawi", "Niger"):
        assert region in text
    assert "log1p" in text and "Limits" in text


def test_experiment_regions_are_absent_from_pretraining(shipped: tuple[str, object]) -> None:
    """The card's record of held-out regions matches the model: its training bbox is global yet no region was kept."""
    name, _ = shipped
    run = json.loads((MODELS / f"{name}.run.json").read_text())
    held = {h["region"]: h for h in run["held_out"]}
    assert {"Edgeroi (NSW, Australia)", "Malawi", "Niger (arid)"} <= set(held)
    assert held["Malawi"]["global_samples_removed"] >= held["Malawi"]["region_samples"]
    assert held["Niger (arid)"]["global_samples_removed"] >= held["Niger (arid)"]["region_samples"]


def test_hold_out_buffer_distance_is_great_circle() -> None:
    """The pretraining hold-out buffer: 0.4° of latitude is 44.5 km (inside 50 km), 0.5° is 55.6 km (outside)."""
    import sys

    sys.path.insert(0, str(MODELS.parents[1] / "benchmarks"))
    from pretrain_models import BUFFER_KM, near_any

    ref_lon, ref_lat = np.array([34.0]), np.array([-13.0])
    lon = np.array([34.0, 34.0, 34.0 + 0.4 / np.cos(np.radians(13.0)), 34.0 + 0.5 / np.cos(np.radians(13.0))])
    lat = np.array([-13.4, -13.5, -13.0, -13.0])
    assert BUFFER_KM == 50.0
    assert near_any(lon, lat, ref_lon, ref_lat, BUFFER_KM).tolist() == [True, False, True, False]
