"""Pretrain the shipped global SoilNet models on WISE + ISIS + AfSP (0-30 cm) with the experiment's regions held out.

Usage: ``python benchmarks/pretrain_models.py [--pack coarse|starter|both] [--members N] [--epochs E] [--seed S]``.
Writes ``assets/models/global-<pack>-v1.geesoil`` and its model card ``global-<pack>-v1.md``. The soil tables are
``$GEESOIL_SHARED_DATA/soil`` (default ``../shared/data`` beside the repository); ``coarse`` is the shared coarse
global pack, ``starter`` the starter pack (built in the user cache on first use).

Held out of pretraining (so ``benchmarks/transfer_experiment.py`` is honest): every sample of each experiment region
(:data:`REGIONS`) and every global sample within :data:`BUFFER_KM` of one. The pooled sources are spatially
de-duplicated (WISE first, then ISIS, then AfSP; locations rounded to 0.001°). The networks' validation splits (early
stopping, smearing, conformal calibration) are grouped by 100 km blocks, so the card's validation metrics are
spatial, not site-level.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geesoil.covariates.open import open_sources
from geesoil.cv import block_ids
from geesoil.evaluate import covariate_table
from geesoil.model.io import read_metadata, save_model
from geesoil.model.network import SoilNet
from geesoil.samples import load_samples, pool_sources

log = logging.getLogger("pretrain_models")

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = ROOT / "assets" / "models"
VERSION = "v1"
GLOBAL_SOURCES = ("wise", "isis", "afsp")
#: global samples closer than this to a region's samples are held out of pretraining too
BUFFER_KM = 50.0
#: validation groups of the pretraining ensemble (spatial, so validation metrics are not site-level)
VALIDATION_BLOCK_KM = 100.0
PACKS = ("coarse", "starter")
_EARTH_RADIUS_KM = 6371.0088
_ISO_PREFIX = re.compile(r"^([A-Z]{2}) ")


def shared_data() -> Path:
    return Path(os.environ.get("GEESOIL_SHARED_DATA", ROOT.parent / "shared" / "data"))


def pack_sources(pack: str) -> list[str]:
    """The ``open_sources`` words for a pack name (``coarse`` = the shared coarse global pack)."""
    if pack == "coarse":
        return [str(shared_data() / "covariates")]
    if pack == "starter":
        return ["starter"]
    raise ValueError(f"unknown pack {pack!r}; use one of {PACKS}")


def model_path(pack: str) -> Path:
    return MODELS_DIR / f"global-{pack}-{VERSION}.geesoil"


# ------------------------------------------------------------------------------------------------ samples
def country_codes(frame: pd.DataFrame) -> pd.Series:
    """ISO alpha-2 country per row: ``country_iso2`` where given, else AfSPDB's ``"CC <id>"`` profile-id prefix."""
    out = pd.Series(pd.NA, index=frame.index, dtype="object")
    if "country_iso2" in frame.columns:
        out = frame["country_iso2"].astype("object").where(frame["country_iso2"].notna(), pd.NA)
    prefix = frame["profile_id"].astype(str).str.extract(_ISO_PREFIX, expand=False)
    return out.fillna(prefix).astype("object")


def load_global(soil_dir: Path) -> pd.DataFrame:
    """WISE, ISIS and AfSP harmonised to 0-30 cm, pooled with spatial de-duplication, with a ``country`` column."""
    frames = []
    for name in GLOBAL_SOURCES:
        f = load_samples(soil_dir / f"{name}.parquet", depth=(0, 30), method="spline")
        f = f.assign(country=country_codes(f))
        frames.append(f[["profile_id", "lon", "lat", "oc_gkg", "source", "country"]])
    return pool_sources(frames, decimals=3)


@dataclass(frozen=True)
class Region:
    """An experiment region: how to pick its samples and how big its CV blocks are."""

    name: str
    title: str
    block_km: float
    select: Callable[[Path], pd.DataFrame]
    description: str


def _edgeroi(soil_dir: Path) -> pd.DataFrame:
    f = load_samples(soil_dir / "edgeroi.parquet", depth=(0, 30), method="spline")
    return f[["profile_id", "lon", "lat", "oc_gkg", "source"]].assign(country="AU")


def _country(code: str) -> Callable[[Path], pd.DataFrame]:
    def select(soil_dir: Path) -> pd.DataFrame:
        g = load_global(soil_dir)
        return g.loc[g["country"] == code].reset_index(drop=True)

    return select


REGIONS: dict[str, Region] = {
    "edgeroi": Region(
        "edgeroi",
        "Edgeroi (NSW, Australia)",
        5.0,
        _edgeroi,
        "soil/edgeroi.parquet (CSIRO NatSoil), 0-30 cm; not part of any global source",
    ),
    "malawi": Region(
        "malawi",
        "Malawi",
        50.0,
        _country("MW"),
        "pooled global samples with country MW (WISE country_iso2, AfSPDB profile-id prefix 'MW '); "
        "lon 32.8-35.9, lat -17.1 to -9.5",
    ),
    "niger": Region(
        "niger",
        "Niger (arid)",
        50.0,
        _country("NE"),
        "pooled global samples with country NE (WISE/ISIS country_iso2, AfSPDB prefix 'NE '); "
        "Sahelian south of Niger",
    ),
}


def _unit_xyz(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    lo, la = np.radians(lon), np.radians(lat)
    return np.column_stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])


def near_any(
    lon: np.ndarray, lat: np.ndarray, ref_lon: np.ndarray, ref_lat: np.ndarray, km: float
) -> np.ndarray:
    """Whether each point lies within ``km`` (great circle) of any reference point."""
    from scipy.spatial import cKDTree

    chord = 2.0 * np.sin(km / _EARTH_RADIUS_KM / 2.0)
    tree = cKDTree(_unit_xyz(np.asarray(ref_lon, float), np.asarray(ref_lat, float)))
    d, _ = tree.query(_unit_xyz(np.asarray(lon, float), np.asarray(lat, float)), k=1)
    return d <= chord


def pretraining_samples(soil_dir: Path) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """The pooled global samples minus every region's samples and their :data:`BUFFER_KM` surroundings."""
    pooled = load_global(soil_dir)
    lon, lat = pooled["lon"].to_numpy(float), pooled["lat"].to_numpy(float)
    drop = np.zeros(len(pooled), bool)
    held = []
    for region in REGIONS.values():
        r = region.select(soil_dir)
        near = near_any(lon, lat, r["lon"].to_numpy(float), r["lat"].to_numpy(float), BUFFER_KM)
        held.append(
            {
                "region": region.title,
                "selection": region.description,
                "region_samples": int(len(r)),
                "bbox": [round(float(v), 3) for v in (r.lon.min(), r.lat.min(), r.lon.max(), r.lat.max())],
                "global_samples_removed": int((near & ~drop).sum()),
            }
        )
        drop |= near
    log.info("held out %d of %d pooled global samples", int(drop.sum()), len(pooled))
    out = pooled.loc[~drop].reset_index(drop=True)
    out.attrs["dropped_per_source"] = pooled.attrs.get("dropped_per_source", {})
    return out, held


# ------------------------------------------------------------------------------------------------ training
def pretrain(
    pack: str, *, members: int, epochs: int, seed: int, soil_dir: Path, batch_size: int = 1024
) -> dict[str, Any]:
    """Fit and save ``global-<pack>-v1.geesoil``; returns what the model card needs."""
    t0 = time.perf_counter()
    samples, held = pretraining_samples(soil_dir)
    source = open_sources(pack_sources(pack))
    samples, X, y = covariate_table(samples, source, where=f"global samples ({pack})")
    specs = [s for s in source.specs if X[s.name].notna().any()]
    groups = block_ids(X["lon"], X["lat"], VALIDATION_BLOCK_KM)
    model = SoilNet(
        specs, n_members=members, max_epochs=epochs, batch_size=batch_size, random_state=seed, progress=False
    )
    model.fit(X, y, groups=groups, sources=samples["source"].astype(str).tolist())
    path = save_model(model, model_path(pack))
    missing = {s.name: round(float(X[s.name].isna().mean()), 4) for s in specs}
    info = {
        "pack": pack,
        "sources_words": pack_sources(pack),
        "held_out": held,
        "dedup_dropped": samples.attrs.get("dropped_per_source", {}),
        "missing_fraction": missing,
        "members": members,
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": seed,
        "seconds": round(time.perf_counter() - t0, 1),
        "size_bytes": path.stat().st_size,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.python_implementation()} "
        f"{platform.python_version()}",
    }
    write_card(path, info)
    return info


# ------------------------------------------------------------------------------------------------ model card
def _fmt(v: Any, nd: int = 3) -> str:
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def write_card(path: Path, info: dict[str, Any]) -> Path:
    """Write the model card ``<model>.md`` beside the model, from its metadata and the run's ``info``."""
    doc = read_metadata(path)
    m = doc["model"]
    ts = m["training_summary"]
    val = m["metrics"]["validation"]
    covs = m["encoder"]["covariates"]
    cmd = (
        f"python benchmarks/pretrain_models.py --pack {info['pack']} --members {info['members']} "
        f"--epochs {info['epochs']} --batch-size {info['batch_size']} --seed {info['seed']}"
    )
    lines = [
        f"# Model card: `{path.name}`",
        "",
        f"A globally pretrained SOC (g/kg, 0-30 cm) network: a `soilnet` deep ensemble of {m['n_members']} "
        "GSoilCPM-style group-branch networks with conformal prediction intervals. It is the starting point for "
        "`geesoil finetune`; on its own it is a coarse global map, not a regional one.",
        "",
        "## Use",
        "",
        "```",
        f"geesoil finetune --model assets/models/{path.name} --samples my_samples.csv "
        + " ".join(
            f"--covariates {w if info['pack'] == 'starter' else '<shared>/data/covariates'}"
            for w in info["sources_words"]
        )
        + " -o regional.geesoil",
        "```",
        "",
        "## Covariates",
        "",
        f"Source: **{info['pack']}** "
        + (
            "(the shared coarse global pack, `data/covariates/pack.json`)"
            if info["pack"] == "coarse"
            else "(the starter pack: `--covariates starter`, built from pinned PyPI wheels)"
        )
        + f". Location: `{m['params']['location']}` features of lon/lat.",
        "",
        "| covariate | group | kind | units | missing at training samples |",
        "|---|---|---|---|---|",
    ]
    for c in covs:
        miss = info["missing_fraction"].get(c["name"], float("nan"))
        lines.append(f"| `{c['name']}` | {c['group']} | {c['kind']} | {c.get('units') or ''} | {miss:.1%} |")
    lines += [
        "",
        "## Training data",
        "",
        f"- Sources: WISE, ISIS and AfSP horizons harmonised to 0-30 cm (equal-area spline), pooled with spatial "
        f"de-duplication (WISE first; locations rounded to 0.001°). Samples per source after de-duplication and "
        f"hold-out: {', '.join(f'{k} {v}' for k, v in ts.get('sources', {}).items())}.",
        f"- n = {ts['n']} samples in {ts['n_sites']} non-empty {VALIDATION_BLOCK_KM:g} km blocks; bbox (lon/lat) "
        f"{', '.join(f'{v:.1f}' for v in ts['bbox'])}.",
        f"- Target: `{m['target']['transform']}` of SOC, standardised (mean {m['target']['mean']:.3f}, "
        f"sd {m['target']['std']:.3f}); predictions back-transformed with Duan smearing "
        f"(factor {m['target']['smearing']:.3f}). Training SOC median {ts['y']['median']:.1f}, mean "
        f"{ts['y']['mean']:.1f}, max {ts['y']['max']:.0f} g/kg.",
        "",
        "### Held out of pretraining",
        "",
        f"Every sample of each region used in `benchmarks/transfer_experiment.py`, and every global sample within "
        f"{BUFFER_KM:g} km of one, was removed before training:",
        "",
        "| region | selection | region samples | bbox | global samples removed |",
        "|---|---|---|---|---|",
    ]
    for h in info["held_out"]:
        lines.append(
            f"| {h['region']} | {h['selection']} | {h['region_samples']} | "
            f"{', '.join(str(v) for v in h['bbox'])} | {h['global_samples_removed']} |"
        )
    lines += [
        "",
        "## Validation",
        "",
        f"Each member validates on its own held-out {VALIDATION_BLOCK_KM:g} km spatial blocks "
        f"(≈{m['params']['val_fraction']:.0%} of samples; used for early stopping, smearing and conformal "
        "calibration). Pooled out-of-validation scores (g/kg):",
        "",
        "| n | MAE | RMSE | bias | R² | 90 % interval coverage (in-sample calibration) |",
        "|---|---|---|---|---|---|",
        f"| {val['n']} | {val['mae']:.2f} | {val['rmse']:.2f} | {val['bias']:.2f} | {val['r2']:.3f} | "
        f"{val.get('coverage90_in_sample_calibration', float('nan')):.3f} |",
        "",
        "The coverage is measured on the calibration residuals themselves, so it is ≈0.90 by construction; "
        "regional coverage is measured in `docs/results.md`.",
        "",
        "## Limits",
        "",
        "- Coarse covariates (1/3° to 0.05°; climate at 10′-0.25°): the model knows climate and broad land cover, "
        "not terrain, parent material or management. Use it through fine-tuning with regional samples.",
        "- Depth 0-30 cm only; SOC content (g/kg), not stock.",
        "- Sample density follows WISE/AfSP: Africa dominates; boreal, Antarctic and peat soils are sparse.",
        "- Dates are ignored (profiles span decades).",
        "- Intervals are calibrated on global spatial validation residuals; re-calibrate on regional data "
        "(every fine-tuning strategy does).",
        "",
        "## Provenance",
        "",
        f"- Command: `{cmd}`",
        f"- Ensemble: {info['members']} members, ≤ {info['epochs']} epochs, seed {info['seed']}; trained in "
        f"{info['seconds']:.0f} s on {info['machine']} (shared with other jobs, under `nice`), {info['date']}; "
        f"geesoil {doc['geesoil_version']}.",
        f"- File size: {info['size_bytes'] / 1e6:.2f} MB.",
        "",
    ]
    card = path.with_suffix(".md")
    card.write_text("\n".join(lines))
    (path.parent / f"{path.stem}.run.json").write_text(json.dumps(info, indent=1) + "\n")
    return card


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pack", choices=[*PACKS, "both"], default="both")
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--card-only", action="store_true", help="rewrite the model cards from the saved runs")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    packs = PACKS if args.pack == "both" else (args.pack,)
    for pack in packs:
        if args.card_only:
            path = model_path(pack)
            write_card(path, json.loads((path.parent / f"{path.stem}.run.json").read_text()))
            continue
        info = pretrain(
            pack,
            members=args.members,
            epochs=args.epochs,
            seed=args.seed,
            soil_dir=shared_data() / "soil",
            batch_size=args.batch_size,
        )
        print(json.dumps({k: info[k] for k in ("pack", "seconds", "size_bytes")}))


if __name__ == "__main__":
    main()
