"""Benchmark: peak memory of one very large map (20000 × 20000 pixels by default) — bounded by tile size, not AOI.

Usage: ``python benchmarks/bench_map_large.py [--pixels 20000] [--tile-size 1024] [--bbox 60,25,100,65]
[--trees 8] [--interval 0.5]``. Takes 20–60 minutes on 2 cores at the default size; ``--pixels 2000`` is a
one-minute smoke run of the same pipeline.

The map is ``run_map`` end to end (covariate reads, masks, mean + 90 % interval, three COGs with overviews, the
quick-look PNG, ``run.json``) over a square EPSG:4326 box (default: lon 60–100°, lat 25–65°, Central Asia and
Siberia, nearly all land) at the resolution that gives ``--pixels`` pixels a side, with the shared coarse covariate
pack. So that 400 million pixels are affordable on 2 cores the model is cheap but real: a ``RandomForestSoil`` of
``--trees`` trees (``min_samples_leaf`` 20) on five covariates, trained on the WISE topsoil (0–30 cm) profiles.

The map runs in its own child process (the model is trained in another one, so the parent stays small). The child
records its peak resident set (``VmHWM``; ``ru_maxrss`` too, which on Linux may include the parent's peak carried
over ``fork``/``exec``), samples ``VmRSS`` every ``--interval`` seconds (``rss_series``: seconds, MiB), and notes
each stage (tile prediction, each COG, summary, quick-look) with its start, end and the highest RSS sampled in it.
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    add_output_args,
    machine_info,
    make_result,
    maxrss_mb,
    out_dir_of,
    quiet_geesoil,
    run_child,
    save_result,
    shared_data,
    vm_rss_mb,
)

NAME = "map_large"
#: lon0, lat0, lon1, lat1: Central Asia and southern Siberia, land but for the Aral Sea and a sliver of the
#: Arabian Sea at the south-west corner.
BBOX = (60.0, 25.0, 100.0, 65.0)
COVARIATES = ("elevation", "bio01", "bio12", "ndvi", "treecover")
#: RSS budget the roadmap sets for a 20k × 20k map on one machine (MiB)
BUDGET_MB = 2048
#: at most this many points of the RSS time series go into the result
MAX_SERIES = 400


def train_child(path: str, trees: int) -> dict[str, Any]:
    """Child: fit a small random forest on WISE topsoil profiles and save it to ``path``."""
    import pandas as pd

    from geesoil.baselines import RandomForestSoil
    from geesoil.covariates.local import LocalPackSource
    from geesoil.model.io import save_model

    source = LocalPackSource(shared_data() / "covariates")
    soil = pd.read_parquet(shared_data() / "soil" / "wise.parquet")
    top = soil[(soil["top_cm"] >= 0) & (soil["top_cm"] < 30)]
    prof = top.groupby("profile_id").agg(
        lon=("lon", "first"), lat=("lat", "first"), oc_gkg=("oc_gkg", "mean")
    )
    prof = prof.reset_index(drop=True)
    with quiet_geesoil():  # profiles off the coarse rasters (coasts, Antarctica) are dropped below
        cov = source.sample(prof[["lon", "lat"]])
    frame = pd.concat([prof, cov[list(COVARIATES)]], axis=1).dropna().reset_index(drop=True)
    specs = [s for s in source.specs if s.name in COVARIATES]
    model = RandomForestSoil(specs, n_estimators=trees, min_samples_leaf=20, random_state=0, n_jobs=1)
    model.fit(frame[[*COVARIATES, "lon", "lat"]], frame["oc_gkg"].to_numpy())
    save_model(model, Path(path))
    return {"training_profiles": len(frame), "oob_mae_gkg": model.oob_mae_}


class RssSampler:
    """Samples this process's ``VmRSS`` every ``interval`` seconds on a daemon thread."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.t0 = time.perf_counter()
        self.series: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self) -> float:
        rss = vm_rss_mb() or 0.0
        self.series.append((time.perf_counter() - self.t0, rss))
        return rss

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> RssSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def peak_between(self, t0: float, t1: float) -> float | None:
        vals = [r for t, r in self.series if t0 <= t <= t1]
        return max(vals) if vals else None


def _instrument(sampler: RssSampler, stages: list[dict[str, Any]]) -> None:
    """Wrap the mapping stages so each records its start/end time and RSS (the module globals the run calls)."""
    import geesoil.mapping.quicklook as ql
    import geesoil.mapping.run as run

    def wrap(module: Any, attr: str, label: Any) -> None:
        fn = getattr(module, attr)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            name = label(args, kwargs) if callable(label) else label
            start = time.perf_counter() - sampler.t0
            rss0 = sampler.sample()
            try:
                return fn(*args, **kwargs)
            finally:
                end = time.perf_counter() - sampler.t0
                rss1 = sampler.sample()
                stages.append(
                    {
                        "stage": name,
                        "start_s": start,
                        "end_s": end,
                        "rss_start_mb": rss0,
                        "rss_end_mb": rss1,
                        "rss_max_mb": sampler.peak_between(start, end),
                    }
                )

        setattr(module, attr, wrapped)

    wrap(run, "run_tiles", "predict tiles")
    wrap(run, "write_cog", lambda a, k: f"cog {Path(a[0]).name}")
    wrap(run, "_summary", "summary")
    wrap(ql, "write_quicklook", "quick-look")


def map_child(
    aoi: str, model: str, covariates: list[str], scale: float, tile_size: int, interval: float
) -> dict[str, Any]:
    """Child: one instrumented map into a temporary folder; RSS series, stages and run.json figures."""
    logging.basicConfig(level=logging.ERROR)
    from geesoil.mapping.run import MapRequest, execute, plan_map

    stages: list[dict[str, Any]] = []
    with RssSampler(interval) as sampler, tempfile.TemporaryDirectory(prefix="geesoil-bench-large-") as tmp:
        _instrument(sampler, stages)
        req = MapRequest(
            aoi=aoi,
            out=Path(tmp) / "map",
            model=Path(model),
            covariates=tuple(covariates),
            scale=scale,
            crs="EPSG:4326",
            tile_size=tile_size,
            progress=False,
            yes=True,
        )
        t0 = time.perf_counter()
        plan = plan_map(req)
        rss_planned = sampler.sample()
        doc = execute(plan)
        wall = time.perf_counter() - t0
        out_mb = sum(p.stat().st_size for p in (Path(tmp) / "map").glob("*.*") if p.is_file()) / 2**20
        tiles_mb = sum(p.stat().st_size for p in (Path(tmp) / "map" / ".tiles").glob("*.npz")) / 2**20
    series = sampler.series
    step = max(1, -(-len(series) // MAX_SERIES))
    return {
        "grid": doc["grid"],
        "pixels": doc["pixels"],
        "tiles": doc["tiles"]["tiles"],
        "timings_s": doc["timings_s"],
        "map_s": wall,
        "rss_after_plan_mb": rss_planned,
        "ru_maxrss_mb": maxrss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss),
        "rss_sampled_max_mb": max(r for _, r in series),
        "rss_samples": len(series),
        "rss_series": [[round(t, 1), round(r, 1)] for t, r in series[::step]],
        "stages": stages,
        "outputs_mb": out_mb,
        "tile_store_mb": tiles_mb,
        "mean_soc_gkg": doc["summary"]["mean_soc_gkg"],
    }


def run(
    *,
    pixels: int = 20_000,
    bbox: tuple[float, float, float, float] = BBOX,
    tile_size: int = 1024,
    trees: int = 8,
    interval: float = 0.5,
) -> dict[str, Any]:
    from geesoil.mapping.aoi import M_PER_DEG

    machine = machine_info("cpu")
    side = max(bbox[2] - bbox[0], bbox[3] - bbox[1])
    scale = side / pixels * M_PER_DEG
    with tempfile.TemporaryDirectory(prefix="geesoil-bench-large-") as tmp:
        model = str(Path(tmp) / "rf.geesoil")
        trained = run_child("bench_map_large:train_child", {"path": model, "trees": trees})
        child = run_child(
            "bench_map_large:map_child",
            {
                "aoi": ",".join(f"{v:g}" for v in bbox),
                "model": model,
                "covariates": [str(shared_data() / "covariates")],
                "scale": scale,
                "tile_size": tile_size,
                "interval": interval,
            },
        )
    v = child.value
    grid_px = v["pixels"]["grid"]
    figures = {
        "width": v["grid"]["width"],
        "height": v["grid"]["height"],
        "grid_pixels": grid_px,
        "valid_pixels": v["pixels"]["valid"],
        "tiles": v["tiles"],
        "tile_pixels": tile_size * tile_size,
        "peak_rss_mb": child.peak_rss_mb,
        "ru_maxrss_mb": v["ru_maxrss_mb"],
        "rss_sampled_max_mb": v["rss_sampled_max_mb"],
        "rss_after_plan_mb": v["rss_after_plan_mb"],
        "within_budget": child.peak_rss_mb < BUDGET_MB,
        "map_s": v["map_s"],
        "pixels_per_s": grid_px / v["map_s"],
        "valid_pixels_per_s": v["pixels"]["valid"] / v["map_s"],
        "stage_s": v["timings_s"],
        "stages": v["stages"],
        "rss_series": v["rss_series"],
        "rss_samples": v["rss_samples"],
        "outputs_mb": v["outputs_mb"],
        "tile_store_mb": v["tile_store_mb"],
        "mean_soc_gkg": v["mean_soc_gkg"],
        "model": trained.value,
    }
    params = {
        "pixels": pixels,
        "bbox": list(bbox),
        "crs": "EPSG:4326",
        "scale_m": scale,
        "tile_size": tile_size,
        "model": f"RandomForestSoil, {trees} trees, min_samples_leaf 20, on {', '.join(COVARIATES)} + lon/lat "
        "(WISE topsoil 0-30 cm profiles)",
        "covariates": "shared coarse pack",
        "rss_interval_s": interval,
        "budget_mb": BUDGET_MB,
    }
    directions = {
        "within_budget": "info",
        "rss_samples": "info",
        "outputs_mb": "info",
        "tile_store_mb": "info",
        "rss_after_plan_mb": "info",
        "rss_sampled_max_mb": "info",
        "ru_maxrss_mb": "info",
    }
    notes = [
        "peak_rss_mb is the map child's VmHWM; ru_maxrss_mb is the child's getrusage(RUSAGE_SELF), which on Linux "
        "may include the (smaller) parent's peak carried across fork/exec",
        "pixels_per_s counts every grid pixel; valid_pixels_per_s only the predicted ones",
    ]
    return make_result(NAME, params, figures, machine=machine, directions=directions, notes=notes)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pixels", type=int, default=20_000, help="grid pixels a side (default 20000)")
    ap.add_argument("--bbox", default=",".join(f"{v:g}" for v in BBOX), help="lon0,lat0,lon1,lat1 (square)")
    ap.add_argument("--tile-size", type=int, default=1024)
    ap.add_argument("--trees", type=int, default=8, help="trees of the random forest")
    ap.add_argument("--interval", type=float, default=0.5, help="RSS sampling interval (s)")
    add_output_args(ap)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    bbox = tuple(float(v) for v in args.bbox.split(","))
    if len(bbox) != 4:
        ap.error("--bbox needs lon0,lat0,lon1,lat1")
    result = run(
        pixels=args.pixels,
        bbox=bbox,  # type: ignore[arg-type]
        tile_size=args.tile_size,
        trees=args.trees,
        interval=args.interval,
    )
    save_result(result, out_dir_of(args))


if __name__ == "__main__":
    main()
