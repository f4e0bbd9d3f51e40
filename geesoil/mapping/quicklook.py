"""A quick-look PNG of the mean SOC map: colour bar in g/kg, axes in km (or degrees), AOI outline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from pyproj import CRS
from shapely.geometry.base import BaseGeometry

#: The preview is read at most this many pixels on its long side (from the COG's overviews when it has them).
MAX_PREVIEW = 1200


def write_quicklook(
    cog: str | Path, path: str | Path, geom: BaseGeometry | None = None, title: str = "SOC"
) -> Path:
    """Render the band of ``cog`` to ``path`` (PNG), outlining ``geom`` (in the raster's CRS) when given."""
    # A bare Figure (no pyplot) renders off-screen without switching the caller's backend (e.g. notebook inline).
    from matplotlib.figure import Figure

    with rasterio.open(cog) as src:
        f = max(1.0, max(src.width, src.height) / MAX_PREVIEW)
        shape = (max(1, round(src.height / f)), max(1, round(src.width / f)))
        arr = src.read(1, out_shape=shape, masked=True).astype(float).filled(np.nan)
        left, bottom, right, top = src.bounds
        geographic = CRS.from_user_input(src.crs).is_geographic
        units = src.tags(1).get("units", "g/kg")
    k = 1.0 if geographic else 1000.0
    unit = "°" if geographic else "km"
    fig = Figure(figsize=(7, 6), dpi=110)
    ax = fig.subplots()
    finite = arr[np.isfinite(arr)]
    vmin, vmax = np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0)
    im = ax.imshow(
        arr,
        extent=(left / k, right / k, bottom / k, top / k),
        cmap="YlOrBr",
        vmin=vmin,
        vmax=vmax if vmax > vmin else vmin + 1,
        interpolation="nearest",
    )
    if geom is not None and not geom.is_empty:
        polys = getattr(geom, "geoms", [geom])
        for p in polys:
            for ring in [p.exterior, *p.interiors]:
                xs, ys = ring.xy
                ax.plot(np.asarray(xs) / k, np.asarray(ys) / k, color="black", lw=0.8)
    xs0, ys0, xs1, ys1 = left, bottom, right, top
    if geom is not None and not geom.is_empty:
        gx0, gy0, gx1, gy1 = geom.bounds
        xs0, ys0, xs1, ys1 = min(xs0, gx0), min(ys0, gy0), max(xs1, gx1), max(ys1, gy1)
    pad = 0.03 * max(xs1 - xs0, ys1 - ys0)
    ax.set_xlim((xs0 - pad) / k, (xs1 + pad) / k)
    ax.set_ylim((ys0 - pad) / k, (ys1 + pad) / k)
    ax.set_xlabel(f"x ({unit})" if not geographic else "longitude (°)")
    ax.set_ylabel(f"y ({unit})" if not geographic else "latitude (°)")
    ax.set_title(title)
    cb = fig.colorbar(im, ax=ax, shrink=0.85)
    cb.set_label(f"SOC ({units})")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path
