"""Benchmark: mapping — throughput, peak memory against AOI size, and a 2-worker Dask LocalCluster against serial.

Usage: ``python benchmarks/bench_map.py [--sides 1,2,4,8] [--full] [--dask-side 6] [--scale 1000] [--skip-throughput]``.

``throughput``: on the Edgeroi AOI with the Edgeroi regional pack at 100 m and a
small SoilNet (2 members) trained on the Edgeroi profiles, the end-to-end pixels/s of ``run_map`` (covariate reads,
masks, mean, median and interval, COGs, quick-look, run.json) against the model's pure inference (the same layers
from ``predict_layers`` on the prebuilt pixel table) and a 100-tree scikit-learn ``RandomForestRegressor.predict`` on the
same pixels.

``memory``: maps of square AOIs (``--sides`` degrees, centred at ``--center``) with the shipped
``global-coarse-v1`` model on the shared coarse pack at ``--scale`` metres, 256-pixel tiles, each in its own child
process; the child's peak RSS (its ``VmHWM``) is recorded against the pixel count. Tiles are predicted and written one
at a time, so peak RSS should stay flat as the AOI grows beyond one full tile (``rss_exponent_full_tiles`` ≈ 0;
smaller AOIs have smaller tiles). ``bench_map_large.py`` measures one 20000 × 20000-pixel map.

``dask``: the ``--dask-side`` AOI with 256-pixel tiles, serial against ``--dask-workers N`` (a LocalCluster of 2
single-threaded processes by default), each in a child process; wall time includes the cluster's start-up.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    REPO,
    add_output_args,
    machine_info,
    make_result,
    out_dir_of,
    quiet_geesoil,
    run_child,
    save_result,
    scaling_exponent,
    shared_data,
    timer,
    vm_rss_mb,
)

NAME = "map"
COARSE_MODEL = REPO / "assets" / "models" / "global-coarse-v1.geesoil"
#: tile size (pixels a side) of the memory series
TILE_SIZE_MEMORY = 256
#: default AOI centre (lon, lat): the Congo basin, land in every direction for 8°
CENTER = (23.0, 0.0)


def training_table(source: Any) -> Any:
    """Edgeroi profiles (mean OC of their 0-30 cm horizons) with ``source``'s covariates, complete rows only."""
    import pandas as pd

    soil = pd.read_parquet(shared_data() / "soil" / "edgeroi.parquet")
    top = soil[(soil["top_cm"] >= 0) & (soil["top_cm"] < 30)]
    prof = top.groupby("profile_id").agg(
        lon=("lon", "first"), lat=("lat", "first"), oc_gkg=("oc_gkg", "mean")
    )
    prof = prof.reset_index(drop=True)
    frame = pd.concat([prof, source.sample(prof[["lon", "lat"]])], axis=1)
    return frame[frame[[s.name for s in source.specs]].notna().all(axis=1)].reset_index(drop=True)


def train_model(source: Any, frame: Any, members: int, path: Path) -> Path:
    """A small SoilNet (``members`` members, 30 epochs) on :func:`training_table`, saved at ``path``."""
    from geesoil.model.io import save_model
    from geesoil.model.network import SoilNet

    names = [s.name for s in source.specs]
    model = SoilNet(source.specs, n_members=members, max_epochs=30, patience=10, progress=False, device="cpu")
    model.fit(frame[names + ["lon", "lat"]], frame["oc_gkg"].to_numpy())
    return save_model(model, path)


def throughput(members: int = 2, tile_size: int = 512) -> dict[str, Any]:
    """End-to-end vs inference vs sklearn RF pixels/s on the Edgeroi AOI (see the module docstring)."""
    import pandas as pd
    from sklearn.ensemble import RandomForestRegressor

    from geesoil.covariates.local import LocalPackSource
    from geesoil.mapping.run import MapRequest, execute, plan_map
    from geesoil.mapping.tiler import TileSettings, aoi_mask, has_median, tile_table
    from geesoil.model.base import predict_layers

    pack = shared_data() / "regional" / "edgeroi"
    source = LocalPackSource(pack)
    frame = training_table(source)
    with tempfile.TemporaryDirectory(prefix="geesoil-bench-map-") as tmp:
        tmp = Path(tmp)
        with timer() as t_train:
            model_path = train_model(source, frame, members, tmp / "bench.geesoil")
        req = MapRequest(
            aoi=str(REPO / "assets" / "aois" / "edgeroi.geojson"),
            out=tmp / "map",
            model=model_path,
            covariates=(str(pack),),
            tile_size=tile_size,
            progress=False,
        )
        plan = plan_map(req)
        with timer() as t_map:
            doc = execute(plan)
        n = doc["pixels"]["valid"]

        names = list(plan.covariate_names)
        settings = TileSettings(tuple(names), req.alpha)
        X = pd.concat(  # the same valid pixels as one table, read outside the timings
            [tile_table(source, t.grid, aoi_mask(t.grid, plan.geom), names)[0] for t in plan.tiles()],
            ignore_index=True,
        )
        if len(X) != n:
            raise RuntimeError(f"pixel table has {len(X)} rows but the map {n} valid pixels")
        with timer() as t_inf:
            for start in range(0, n, settings.batch):
                xb = X.iloc[start : start + settings.batch]
                predict_layers(plan.model, xb, req.alpha, median=has_median(plan.model))

        feats = names + ["lon", "lat"]
        rf = RandomForestRegressor(n_estimators=100, min_samples_leaf=3, n_jobs=-1, random_state=0)
        rf.fit(frame[feats].to_numpy(), frame["oc_gkg"].to_numpy())
        with timer() as t_rf:
            rf.predict(X[feats].to_numpy())
    return {
        "pixels": n,
        "grid": f"{doc['grid']['width']} x {doc['grid']['height']} at {doc['grid']['resolution']:g} m "
        f"({doc['grid']['crs']})",
        "training_samples": len(frame),
        "train_s": t_train.s,
        "end_to_end_s": t_map.s,
        "end_to_end_pixels_per_s": n / t_map.s,
        "inference_s": t_inf.s,
        "inference_pixels_per_s": n / t_inf.s,
        "sklearn_rf_s": t_rf.s,
        "sklearn_rf_pixels_per_s": n / t_rf.s,
        "end_to_end_vs_inference": t_inf.s / t_map.s,
        "rf_vs_inference": t_inf.s / t_rf.s,
        "end_to_end_stages_s": doc["timings_s"],
    }


def bbox(center: tuple[float, float], side_deg: float) -> str:
    lon, lat = center
    h = side_deg / 2
    return f"{lon - h},{lat - h},{lon + h},{lat + h}"


def map_child(
    aoi: str, model: str, covariates: list[str], scale: float, tile_size: int, dask_workers: int | None = None
) -> dict[str, Any]:
    """Child: one map (``plan_map`` + ``execute``) into a temporary folder; returns pixel counts, timings and the
    resident memory after planning (model and sources loaded) and after the run."""
    logging.basicConfig(level=logging.ERROR)
    from geesoil.mapping.run import MapRequest, execute, plan_map

    with tempfile.TemporaryDirectory(prefix="geesoil-bench-map-") as tmp:
        req = MapRequest(
            aoi=aoi,
            out=Path(tmp) / "map",
            model=Path(model),
            covariates=tuple(covariates),
            scale=scale,
            tile_size=tile_size,
            progress=False,
            yes=True,
            dask_workers=dask_workers,
        )
        with timer() as t:
            plan = plan_map(req)
            rss_planned = vm_rss_mb()
            doc = execute(plan)
        rss_end = vm_rss_mb()
    return {
        "rss_after_plan_mb": rss_planned,
        "rss_end_mb": rss_end,
        "grid_pixels": doc["pixels"]["grid"],
        "valid_pixels": doc["pixels"]["valid"],
        "tiles": doc["tiles"]["tiles"],
        "map_s": t.s,
        "predict_s": doc["timings_s"]["predict"],
        "assemble_s": doc["timings_s"]["assemble"],
    }


def memory_series(
    sides: tuple[float, ...], center: tuple[float, float], scale: float, model: Path
) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    for side in sides:
        child = run_child(
            "bench_map:map_child",
            {
                "aoi": bbox(center, side),
                "model": str(model),
                "covariates": [str(shared_data() / "covariates")],
                "scale": scale,
                "tile_size": TILE_SIZE_MEMORY,
            },
        )
        v = child.value
        runs[f"side{side:g}deg"] = {
            "grid_pixels": v["grid_pixels"],
            "valid_pixels": v["valid_pixels"],
            "tiles": v["tiles"],
            "rss_after_plan_mb": v["rss_after_plan_mb"],
            "peak_rss_mb": child.peak_rss_mb,
            "rss_end_mb": v["rss_end_mb"],
            "map_s": v["map_s"],
            "pixels_per_s": v["grid_pixels"] / v["map_s"],
        }
    out: dict[str, Any] = {"runs": runs}
    if len(sides) >= 2:
        px = [r["grid_pixels"] for r in runs.values()]
        rss = [r["peak_rss_mb"] for r in runs.values()]
        out["rss_exponent"] = scaling_exponent(px, rss)
        out["rss_max_over_min"] = max(rss) / min(rss)
        out["pixels_max_over_min"] = max(px) / min(px)
        # below one full tile the tile itself (and the model's batch) shrinks with the AOI; flat is the claim beyond
        full = [(p, r) for p, r in zip(px, rss, strict=True) if p >= TILE_SIZE_MEMORY**2]
        if len(full) >= 2:
            out["rss_exponent_full_tiles"] = scaling_exponent(*zip(*full, strict=True))
            out["rss_max_over_min_full_tiles"] = max(r for _, r in full) / min(r for _, r in full)
    return out


def dask_vs_serial(
    side: float, center: tuple[float, float], scale: float, model: Path, workers: int
) -> dict[str, Any]:
    common = {
        "aoi": bbox(center, side),
        "model": str(model),
        "covariates": [str(shared_data() / "covariates")],
        "scale": scale,
        "tile_size": 256,
    }
    serial = run_child("bench_map:map_child", common)
    dask = run_child("bench_map:map_child", {**common, "dask_workers": workers})
    return {
        "grid_pixels": serial.value["grid_pixels"],
        "tiles": serial.value["tiles"],
        "serial_s": serial.value["map_s"],
        "serial_predict_s": serial.value["predict_s"],
        f"dask{workers}_s": dask.value["map_s"],
        f"dask{workers}_predict_s": dask.value["predict_s"],
        f"dask{workers}_speedup": serial.value["map_s"] / dask.value["map_s"],
        f"dask{workers}_predict_speedup": serial.value["predict_s"] / dask.value["predict_s"],
        "serial_peak_rss_mb": serial.peak_rss_mb,
        f"dask{workers}_client_peak_rss_mb": dask.peak_rss_mb,
    }


def run(
    *,
    sides: tuple[float, ...] = (1, 2, 4, 8),
    center: tuple[float, float] = CENTER,
    scale: float = 1000.0,
    dask_side: float | None = 6.0,
    dask_workers: int = 2,
    model: Path = COARSE_MODEL,
    with_throughput: bool = True,
) -> dict[str, Any]:
    machine = machine_info("cpu")
    figures: dict[str, Any] = {}
    if with_throughput:
        with quiet_geesoil():
            figures["throughput"] = throughput()
    if sides:
        figures["memory"] = memory_series(sides, center, scale, model)
    if dask_side:
        figures["dask"] = dask_vs_serial(dask_side, center, scale, model, dask_workers)
    params = {
        "throughput": "Edgeroi AOI, Edgeroi regional pack (100 m), SoilNet 2 members / 30 epochs on the Edgeroi "
        "profiles; RF: 100 trees, min_samples_leaf 3, n_jobs -1",
        "model": str(model.relative_to(REPO)) if model.is_relative_to(REPO) else str(model),
        "covariates": "shared coarse pack",
        "center": list(center),
        "sides_deg": list(sides),
        "scale_m": scale,
        "tile_size_memory": TILE_SIZE_MEMORY,
        "dask_side_deg": dask_side,
        "dask_workers": dask_workers,
        "tile_size_dask": 256,
    }
    directions = {
        "memory.rss_exponent": "info",
        "memory.rss_max_over_min": "info",
        "memory.pixels_max_over_min": "info",
        "memory.rss_exponent_full_tiles": "info",
        "memory.rss_max_over_min_full_tiles": "info",
        "throughput.end_to_end_vs_inference": "info",
        "throughput.rf_vs_inference": "info",
        "throughput.train_s": "info",
    }
    notes = [
        "memory and dask maps each run in their own child process; peak RSS is that process's own "
        "(dask workers are separate processes and not included in the client's figure)",
    ]
    return make_result(NAME, params, figures, machine=machine, directions=directions, notes=notes)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--sides", default=None, help="AOI side lengths in degrees (default 1,2,4,8; empty: skip)"
    )
    ap.add_argument("--full", action="store_true", help="the memory series up to a 16° AOI (3.2M pixels)")
    ap.add_argument("--center", default=f"{CENTER[0]},{CENTER[1]}", help="lon,lat of the AOI centre")
    ap.add_argument("--scale", type=float, default=1000.0, help="metres")
    ap.add_argument(
        "--dask-side", type=float, default=6.0, help="AOI side (degrees) of the dask run; 0 skips"
    )
    ap.add_argument("--dask-workers", type=int, default=2)
    ap.add_argument("--model", type=Path, default=COARSE_MODEL)
    ap.add_argument("--skip-throughput", action="store_true")
    add_output_args(ap)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    lon, lat = (float(v) for v in args.center.split(","))
    if args.sides is None:
        args.sides = "1,2,4,8,16" if args.full else "1,2,4,8"
    result = run(
        sides=tuple(float(s) for s in args.sides.split(",") if s.strip()),
        center=(lon, lat),
        scale=args.scale,
        dask_side=args.dask_side or None,
        dask_workers=args.dask_workers,
        model=args.model,
        with_throughput=not args.skip_throughput,
    )
    save_result(result, out_dir_of(args))


if __name__ == "__main__":
    main()
