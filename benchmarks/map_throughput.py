"""Benchmark: end-to-end ``geesoil map`` pixels/s on the Edgeroi pack vs the model's pure inference vs a sklearn RF.

Usage: ``python benchmarks/map_throughput.py [--model FILE] [--scale M] [--tile-size N] [--members K]``.
Covariates are the regional Edgeroi pack (``$GEESOIL_SHARED_DATA/regional/edgeroi``), the AOI is
``assets/aois/edgeroi.geojson``. Without ``--model`` a small SoilNet (``--members`` members, 30 epochs) is trained on
the Edgeroi profiles' 0–30 cm horizons (mean OC per profile) first; training time is not counted.

Three figures on the *same* valid pixels: ``end_to_end`` (``run_map`` from an empty folder: covariate reads, masks,
prediction of mean + interval, COGs, quicklook, run.json); ``inference`` (the model's ``predict`` +
``predict_interval`` on the prebuilt pixel table, as the map calls them); ``sklearn_rf`` (a 100-tree
``RandomForestRegressor`` fitted on the same training table, ``predict`` on the same pixel features). Prints one JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd

from geesoil.covariates.local import LocalPackSource
from geesoil.mapping.run import MapRequest, execute, plan_map
from geesoil.mapping.tiler import TileSettings, aoi_mask, tile_table

REPO = Path(__file__).resolve().parents[1]


def shared() -> Path:
    return Path(os.environ.get("GEESOIL_SHARED_DATA", REPO.parent / "shared" / "data"))


def training_table(source: LocalPackSource) -> pd.DataFrame:
    soil = pd.read_parquet(shared() / "soil" / "edgeroi.parquet")
    top = soil[(soil["top_cm"] >= 0) & (soil["top_cm"] < 30)]
    prof = top.groupby("profile_id").agg(
        lon=("lon", "first"), lat=("lat", "first"), oc_gkg=("oc_gkg", "mean")
    )
    prof = prof.reset_index(drop=True)
    cov = source.sample(prof[["lon", "lat"]])
    frame = pd.concat([prof, cov], axis=1)
    return frame[frame[[s.name for s in source.specs]].notna().all(axis=1)].reset_index(drop=True)


def train_model(source: LocalPackSource, frame: pd.DataFrame, members: int, path: Path) -> Path:
    from geesoil.model.io import save_model
    from geesoil.model.network import SoilNet

    names = [s.name for s in source.specs]
    model = SoilNet(source.specs, n_members=members, max_epochs=30, patience=10, progress=False, device="cpu")
    model.fit(frame[names + ["lon", "lat"]], frame["oc_gkg"].to_numpy())
    return save_model(model, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument(
        "--scale", type=float, default=None, help="metres (default: the pack's finest, 100 m)"
    )
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--members", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    pack = shared() / "regional" / "edgeroi"
    source = LocalPackSource(pack)
    frame = training_table(source)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        model_path = args.model or train_model(source, frame, args.members, tmp / "bench.geesoil")
        train_s = time.perf_counter() - t0
        req = MapRequest(
            aoi=str(REPO / "assets" / "aois" / "edgeroi.geojson"),
            out=tmp / "map",
            model=model_path,
            covariates=(str(pack),),
            scale=args.scale,
            tile_size=args.tile_size,
            progress=False,
        )
        plan = plan_map(req)
        t0 = time.perf_counter()
        doc = execute(plan)
        end_to_end = time.perf_counter() - t0
        n = doc["pixels"]["valid"]

        names = list(plan.covariate_names)
        settings = TileSettings(tuple(names), req.alpha)
        X = pd.concat(  # the same valid pixels as one table, read outside the timings
            [tile_table(source, t.grid, aoi_mask(t.grid, plan.geom), names)[0] for t in plan.tiles()],
            ignore_index=True,
        )
        assert len(X) == n, (len(X), n)
        model = plan.model
        t0 = time.perf_counter()
        for start in range(0, n, settings.batch):
            xb = X.iloc[start : start + settings.batch]
            model.predict(xb)
            model.predict_interval(xb, alpha=req.alpha)
        inference = time.perf_counter() - t0

        from sklearn.ensemble import RandomForestRegressor

        feats = names + ["lon", "lat"]
        rf = RandomForestRegressor(n_estimators=100, min_samples_leaf=3, n_jobs=-1, random_state=0)
        rf.fit(frame[feats].to_numpy(), frame["oc_gkg"].to_numpy())
        t0 = time.perf_counter()
        rf.predict(X[feats].to_numpy())
        rf_s = time.perf_counter() - t0

    report = {
        "name": "map_throughput",
        "params": {
            "aoi": "edgeroi",
            "pack": pack.name,
            "model_kind": doc["model"]["kind"],
            "model_given": args.model is not None,
            "members": args.members if args.model is None else None,
            "grid": doc["grid"],
            "tile_size": args.tile_size,
            "training_samples": len(frame),
        },
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "figures": {
            "pixels": n,
            "train_seconds": round(train_s, 2),
            "end_to_end_seconds": round(end_to_end, 3),
            "end_to_end_pixels_per_s": round(n / end_to_end, 1),
            "inference_seconds": round(inference, 3),
            "inference_pixels_per_s": round(n / inference, 1),
            "sklearn_rf_seconds": round(rf_s, 3),
            "sklearn_rf_pixels_per_s": round(n / rf_s, 1),
            "end_to_end_timings_s": doc["timings_s"],
        },
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
