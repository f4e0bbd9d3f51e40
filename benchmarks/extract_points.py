"""Benchmark: sample every covariate of the shared coarse pack at 100k random land points; prints one JSON object.

Usage: ``python benchmarks/extract_points.py [--points N] [--seed S] [--repeat R]``. The pack is
``$GEESOIL_SHARED_DATA/covariates`` (default ``../shared/data`` beside the repository). Land points are drawn
uniformly on the sphere and kept where the 20' elevation layer has data. ``seconds`` is the first (cold) call on a
fresh source, which opens and reads every raster; ``warm_seconds`` the best of ``--repeat`` further calls on the
same source (small bands cached in memory, the 30" Köppen raster read window by window every time).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio

from geesoil.covariates.local import LocalPackSource


def shared_pack() -> Path:
    root = Path(
        os.environ.get("GEESOIL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
    )
    return root / "covariates"


def land_points(pack: Path, n: int, seed: int) -> pd.DataFrame:
    """``n`` points uniform on the sphere where the 20' elevation raster is not nodata."""
    with rasterio.open(pack / "tmap_land_elevation_20min.tif") as src:
        land = src.read(1) != src.nodata
        inv = ~src.transform
    rng = np.random.default_rng(seed)
    chunks, have = [], 0
    while have < n:
        lon = rng.uniform(-180, 180, 4 * n)
        lat = np.degrees(np.arcsin(rng.uniform(-1, 1, 4 * n)))
        col = np.clip((inv.a * lon + inv.c).astype(int), 0, land.shape[1] - 1)
        row = np.clip((inv.e * lat + inv.f).astype(int), 0, land.shape[0] - 1)
        keep = land[row, col]
        chunks.append(pd.DataFrame({"lon": lon[keep], "lat": lat[keep]}))
        have += int(keep.sum())
    return pd.concat(chunks, ignore_index=True).iloc[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.ERROR
    )  # the missing-value report is expected (ocean-adjacent, > 80 N...)

    pack = shared_pack()
    points = land_points(pack, args.points, args.seed)
    source = LocalPackSource(pack)
    t0 = time.perf_counter()
    values = source.sample(points)
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        source.sample(points)
        warm.append(time.perf_counter() - t0)
    report = {
        "name": "extract_points",
        "params": {
            "points": len(points),
            "covariates": len(source.specs),
            "seed": args.seed,
            "pack": pack.name,
            "repeat": args.repeat,
        },
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "rasterio": rasterio.__version__,
            "gdal": rasterio.__gdal_version__,
        },
        "figures": {
            "points": len(points),
            "seconds": round(cold, 3),
            "points_per_s": round(len(points) / cold, 1),
            "warm_seconds": round(min(warm), 3) if warm else None,
            "complete_fraction": round(float(values.notna().all(axis=1).mean()), 4),
        },
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
