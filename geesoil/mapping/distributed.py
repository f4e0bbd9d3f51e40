"""Predict map tiles on a dask.distributed cluster: a local one (``--dask-workers N``) or a running scheduler.

Workers load the model file and open the covariate sources themselves (once per worker process) and write each
finished tile into the run's tile folder, so the folder must be on a file system the workers share (always true for
a local cluster). Tiles are pure functions of their inputs, so the COGs equal those of a serial run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from shapely.geometry.base import BaseGeometry

from geesoil.errors import GeesoilError
from geesoil.grid import Grid
from geesoil.mapping.aoa import AOAReference
from geesoil.mapping.memory import bounded_memory
from geesoil.mapping.tiler import TileSettings, TileStore, predict_tile

log = logging.getLogger(__name__)


@lru_cache(maxsize=4)
def _inputs(model_path: str, sources: tuple[str, ...]) -> tuple[Any, Any]:
    from geesoil.covariates.open import open_sources
    from geesoil.model.io import load_model

    return load_model(model_path), open_sources(list(sources))


def tile_job(
    model_path: str,
    sources: tuple[str, ...],
    grid: Grid,
    geom: BaseGeometry,
    settings: TileSettings,
    aoa: AOAReference | None,
    store_root: str,
    key: str,
) -> str:
    """Predict one tile on a worker and save it; returns the tile key."""
    model, source = _inputs(model_path, sources)
    with bounded_memory():
        TileStore(store_root).save(key, predict_tile(model, source, grid, geom, settings, aoa))
    return key


@contextmanager
def client_for(workers: int | None = None, scheduler: str | None = None) -> Iterator[Any]:
    """A ``distributed.Client``: on a new local cluster of ``workers`` processes, or connected to ``scheduler``."""
    try:
        from distributed import Client, LocalCluster
    except ModuleNotFoundError:
        raise GeesoilError(
            "--dask-workers/--scheduler need dask.distributed: pip install distributed"
        ) from None
    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise GeesoilError(f"--scheduler {scheduler}: cannot connect ({exc})") from None
        try:
            yield client
        finally:
            client.close()
        return
    with (
        LocalCluster(
            n_workers=workers or 2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def run_distributed(
    client: Any,
    jobs: Sequence[tuple[str, Grid]],
    *,
    model_path: Path,
    sources: Sequence[str],
    geom: BaseGeometry,
    settings: TileSettings,
    aoa: AOAReference | None,
    store: TileStore,
    progress: bool = True,
) -> None:
    """Submit one task per (key, tile grid) and wait for all, with a progress bar over finished tiles."""
    from distributed import as_completed
    from tqdm import tqdm

    if not jobs:
        return
    common = client.scatter([geom, settings, aoa], broadcast=True)
    futures = [
        client.submit(
            tile_job,
            str(Path(model_path).resolve()),
            tuple(sources),
            grid,
            *common,
            str(store.root.resolve()),
            key,
            key=f"geesoil-tile-{store.root.resolve()}-{key}",
            pure=False,
        )
        for key, grid in jobs
    ]
    bar = tqdm(total=len(futures), desc="map tiles", unit="tile", disable=not progress, leave=False)
    try:
        for fut in as_completed(futures):
            fut.result()  # re-raises a worker's exception here
            bar.update()
    finally:
        bar.close()
