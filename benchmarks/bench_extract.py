"""Benchmark: covariate extraction at points — the local coarse pack, and Earth Engine through the fake server.

Usage: ``python benchmarks/bench_extract.py [--points 100000] [--ee-points 20000] [--ee-latency 0.2]
[--ee-batch 250] [--ee-workers 1,8] [--no-ee-auto-batch]``.

``local``: every covariate of the shared coarse pack at ``--points`` random land points (uniform on the sphere, kept
where the 20' elevation layer has data). ``cold`` is the first call on a fresh source (opens and reads every raster),
``warm`` the best of ``--repeat`` further calls (small bands cached, the 30" Köppen raster read window by window).

``ee``: :class:`~geesoil.ee.source.EarthEngineSource` (catalog ``coarse-global-v1``, no cache) against
``tests/ee_fake_server.py`` serving the same pack on 127.0.0.1 from its own process, each compute request delayed by
``--ee-latency`` seconds (a stand-in for Earth Engine's round trip and compute; the fake's own per-point raster reads
are included too and do not overlap across requests, since the fake is one Python process). Batches of
``--ee-batch`` points, once per ``--ee-workers`` value, so the figures show how concurrent requests hide latency;
then once more with the batch size the source picks by itself (from the payload limit) and the most workers, to show
what batching adds. Each run records points/s, the ``computeFeatures`` requests (and how many were first pages, i.e.
batches), all requests, and the HTTP body bytes the fake server received and sent (MB = 10^6 bytes, MB/s over the
run's wall time). These are not Earth Engine's real speeds.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    REPO,
    add_output_args,
    machine_info,
    make_result,
    out_dir_of,
    peak_rss_mb,
    quiet_geesoil,
    save_result,
    shared_data,
    timer,
)

NAME = "extract"


def land_points(pack: Path, n: int, seed: int) -> pd.DataFrame:
    """``n`` points uniform on the sphere where the 20' elevation raster is not nodata."""
    import rasterio

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
    return pd.concat(chunks, ignore_index=True).iloc[:n].reset_index(drop=True)


def bench_local(pack: Path, points: pd.DataFrame, repeat: int) -> dict[str, Any]:
    from geesoil.covariates.local import LocalPackSource

    source = LocalPackSource(pack)
    with timer() as cold:
        values = source.sample(points)
    warm = []
    for _ in range(repeat):
        with timer() as t:
            source.sample(points)
        warm.append(t.s)
    n = len(points)
    out = {
        "points": n,
        "covariates": len(source.specs),
        "cold_s": cold.s,
        "cold_points_per_s": n / cold.s,
        "complete_fraction": float(values.notna().all(axis=1).mean()),
    }
    if warm:
        out["warm_s"] = min(warm)
        out["warm_points_per_s"] = n / min(warm)
    return out


def _fake_server_module() -> Any:
    """``tests/ee_fake_server.py``, imported by path (it is test support, not part of the package)."""
    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import ee_fake_server

    return ee_fake_server


def _serve(pack: str, latency_s: float, conn: Any) -> None:
    """Child process: the fake Earth Engine server on ``pack``; answers ``stats`` and ``stop`` on ``conn``."""
    fake = _fake_server_module()
    server = fake.FakeEarthEngine(fake.pack_rasters(Path(pack))).start()
    server.latency_s = latency_s  # compute calls only; discovery and the algorithm list answer at once
    conn.send(server.url)
    while True:
        msg = conn.recv()
        if msg == "stats":
            calls = server.calls_to("")
            features = [c for c in calls if "table:computeFeatures" in c.path]
            conn.send(
                {
                    "requests": len(features),
                    "batches": sum(1 for c in features if not c.body.get("pageToken")),
                    "all_requests": len(calls),
                    "bytes_in": sum(c.bytes_in for c in calls),
                    "bytes_out": sum(c.bytes_out for c in calls),
                    "max_in_flight": server.max_in_flight,
                }
            )
            server.max_in_flight = 0
        elif msg == "stop":
            server.stop()
            conn.send(None)
            return


def _run_figures(n: int, seconds: float, stats: dict[str, int], before: dict[str, int]) -> dict[str, Any]:
    """Figures of one sampling run from the server's cumulative counters after and before it."""
    d = {k: stats[k] - before[k] for k in ("requests", "batches", "all_requests", "bytes_in", "bytes_out")}
    received, sent = d["bytes_out"] / 1e6, d["bytes_in"] / 1e6  # as the client sees them
    return {
        "seconds_s": seconds,
        "points_per_s": n / seconds,
        "requests": d["requests"],
        "batches": d["batches"],
        "all_requests": d["all_requests"],
        "max_in_flight": stats["max_in_flight"],
        "mb_received": received,
        "mb_sent": sent,
        "mb_received_per_s": received / seconds,
        "mb_sent_per_s": sent / seconds,
        "mb_per_s": (received + sent) / seconds,
    }


def bench_ee(
    pack: Path,
    points: pd.DataFrame,
    *,
    latency_s: float,
    batch: int,
    workers: tuple[int, ...],
    auto_batch: bool = True,
) -> dict[str, Any]:
    """Sample ``points`` through the fake server (its own process, so its work does not share our GIL).

    One run per ``workers`` value with batches of ``batch``; with ``auto_batch`` one more run with the most workers
    and the source's own batch size (figures under ``auto_batch``).
    """
    import multiprocessing as mp

    import ee

    from geesoil.ee.auth import initialize
    from geesoil.ee.limits import RetryPolicy
    from geesoil.ee.source import EarthEngineSource

    fake = _fake_server_module()
    ctx = mp.get_context("spawn")
    conn, child_conn = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(str(pack), latency_s, child_conn), daemon=True)
    proc.start()
    url = conn.recv()
    saved = ee.deprecation._FetchDataCatalogStac
    ee.deprecation._FetchDataCatalogStac = dict  # ee.Initialize would fetch a catalog from the internet
    out: dict[str, Any] = {"points": len(points), "latency_s": latency_s, "batch": batch}
    try:
        initialize(project="bench", url=url, login=fake.fake_login(), environ={}, connect_timeout_s=5)
        conn.send("stats")
        before = conn.recv()
        runs: list[tuple[str, int, int | None]] = [(f"workers{w}", w, batch) for w in workers]
        if auto_batch and workers:
            runs.append(("auto_batch", max(workers), None))
        for key, w, size in runs:
            source = EarthEngineSource(
                "coarse-global-v1",
                max_workers=w,
                batch_size=size,
                cache_dir=None,
                retry=RetryPolicy(retries=2, base_s=0.05, max_s=0.2),
                progress=False,
            )
            with timer() as t:
                values = source.sample(points)
            conn.send("stats")
            stats = conn.recv()
            fig = _run_figures(len(points), t.s, stats, before)
            fig["workers"] = w
            fig["batch_size"] = size if size is not None else -(-len(points) // max(1, fig["batches"]))
            fig["covariates"] = values.shape[1]
            fig["complete_fraction"] = float(values.notna().all(axis=1).mean())
            out[key] = fig
            before = stats
        if len(workers) >= 2:
            lo, hi = min(workers), max(workers)
            out[f"workers{hi}_vs_{lo}_speedup"] = (
                out[f"workers{hi}"]["points_per_s"] / out[f"workers{lo}"]["points_per_s"]
            )
        if "auto_batch" in out and workers:
            lo = min(workers)
            out["auto_batch"]["speedup_vs_workers1"] = (
                out["auto_batch"]["points_per_s"] / out[f"workers{lo}"]["points_per_s"]
            )
    finally:
        ee.Reset()
        ee.deprecation._FetchDataCatalogStac = saved
        conn.send("stop")
        conn.recv()
        proc.join(timeout=10)
    return out


def run(
    *,
    points: int = 100_000,
    repeat: int = 2,
    ee_points: int = 20_000,
    ee_latency_s: float = 0.2,
    ee_batch: int = 250,
    ee_workers: tuple[int, ...] = (1, 8),
    ee_auto_batch: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    machine = machine_info("cpu")
    pack = shared_data() / "covariates"
    pts = land_points(pack, max(points, ee_points), seed)
    with quiet_geesoil():  # the missing-value report is expected (coasts, > 80° N...)
        figures: dict[str, Any] = {"local": bench_local(pack, pts.iloc[:points], repeat)}
        if ee_points > 0:
            figures["ee"] = bench_ee(
                pack,
                pts.iloc[:ee_points],
                latency_s=ee_latency_s,
                batch=ee_batch,
                workers=ee_workers,
                auto_batch=ee_auto_batch,
            )
    figures["peak_rss_mb"] = peak_rss_mb()
    params = {
        "pack": "shared coarse pack (data/covariates)",
        "points": points,
        "repeat": repeat,
        "ee_catalog": "coarse-global-v1",
        "ee_points": ee_points,
        "ee_latency_s": ee_latency_s,
        "ee_batch": ee_batch,
        "ee_workers": list(ee_workers),
        "ee_auto_batch": ee_auto_batch,
        "seed": seed,
    }
    notes = [
        "ee figures are against the local fake server with injected latency, not Earth Engine itself",
        "ee MB/s: HTTP body bytes received from / sent to the fake server per second of the run (MB = 10^6 B)",
    ]
    directions = {"ee.latency_s": "info"}
    return make_result(NAME, params, figures, machine=machine, directions=directions, notes=notes)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--ee-points", type=int, default=20_000, help="0 skips the Earth Engine part")
    ap.add_argument("--ee-latency", type=float, default=0.2, help="seconds added to each fake EE request")
    ap.add_argument("--ee-batch", type=int, default=250)
    ap.add_argument("--ee-workers", default="1,8")
    ap.add_argument(
        "--no-ee-auto-batch",
        dest="ee_auto_batch",
        action="store_false",
        help="skip the run with the source's own batch size",
    )
    ap.add_argument("--seed", type=int, default=0)
    add_output_args(ap)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    result = run(
        points=args.points,
        repeat=args.repeat,
        ee_points=args.ee_points,
        ee_latency_s=args.ee_latency,
        ee_batch=args.ee_batch,
        ee_workers=tuple(int(w) for w in args.ee_workers.split(",") if w.strip()),
        ee_auto_batch=args.ee_auto_batch,
        seed=args.seed,
    )
    save_result(result, out_dir_of(args))


if __name__ == "__main__":
    main()
