"""Show a map run: SOC prediction, interval width and AOA layers (geemap/ipyleaflet or matplotlib) and sample points.

Two ways to look at a ``geesoil map`` output folder:

* interactive — :func:`make_map` gives a ``geemap.Map`` (``ee_initialize=False`` unless asked, so it works offline)
  and :func:`add_run_layers` adds the mean, the interval width and the AOA mask with colour bars and a legend;
  :func:`add_samples` adds sample points. Local COGs are shown as an ``ipyleaflet.ImageOverlay`` of a PNG rendered
  here (warped to Web Mercator, so it lines up exactly, at most ``max_size`` pixels a side): geemap's own
  ``add_raster`` needs ``localtileserver`` (a tile server process; not a geesoil dependency) — pass
  ``tiles=True`` to use it when it is installed.
* static — :func:`plot_raster` (map with colour bar), :func:`plot_histogram`, :func:`plot_interval_width` and
  :func:`plot_run` (all three panels) return matplotlib figures; nothing needs a network.
* a page — :func:`run_html` writes a self-contained HTML page (PNG data URIs, CSS colour bars, no scripts) that any
  browser shows offline; ``geemap.Map.to_html`` pulls the widget manager from CDNs and is blank without a network.

Colour maps: SOC ``YlOrBr`` (sequential, light = little carbon), interval width ``RdPu`` (dark = uncertain), AOA
outside shaded grey (inside transparent). Colour limits default to the 2nd–98th percentile of the valid pixels, and
the mean and the interval bounds share one scale.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geesoil.errors import GeesoilError

SOC_CMAP = "YlOrBr"
WIDTH_CMAP = "RdPu"
#: RGBA of pixels outside the area of applicability (inside stays transparent).
AOA_OUTSIDE_RGBA = (90, 90, 90, 170)
AOA_OUTSIDE_HEX = "#5a5a5a"
WEB_MERCATOR = "EPSG:3857"
#: Longest side (pixels) of a PNG overlay: browsers choke on huge data URLs.
MAX_OVERLAY_PX = 1024


class VizError(GeesoilError):
    """A map output folder or raster cannot be shown (missing file, no valid pixels...)."""


@dataclass(frozen=True)
class Overlay:
    """A rendered raster: RGBA pixels (Web Mercator rows/cols) and their WGS84 bounds ((south, west), (north, east))."""

    rgba: np.ndarray
    bounds: tuple[tuple[float, float], tuple[float, float]]
    vmin: float | None
    vmax: float | None
    cmap: str | None

    def png(self) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(self.rgba, mode="RGBA").save(buf, format="PNG", optimize=True)
        return buf.getvalue()

    def data_url(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png()).decode("ascii")


# -- reading ---------------------------------------------------------------------------------------------------


def read_band(path: str | Path) -> tuple[np.ndarray, Any, Any]:
    """Band 1 as float64 with NaN for nodata, its affine transform and CRS."""
    import rasterio

    path = Path(path)
    if not path.is_file():
        raise VizError(f"{path}: no such raster; run geesoil map first or check the folder")
    with rasterio.open(path) as src:
        arr = src.read(1, masked=True).astype("float64")
        return arr.filled(np.nan), src.transform, src.crs


def color_limits(*arrays: np.ndarray, q: tuple[float, float] = (2, 98)) -> tuple[float, float]:
    """Shared colour limits: the ``q`` percentiles of the finite values of all ``arrays``."""
    vals = np.concatenate([a[np.isfinite(a)].ravel() for a in arrays])
    if vals.size == 0:
        raise VizError("no valid pixels to scale the colours to (the map is all nodata)")
    lo, hi = np.percentile(vals, q)
    if hi <= lo:
        hi = lo + 1e-6
    return float(lo), float(hi)


def run_files(folder: str | Path) -> dict[str, Path]:
    """The layers of a map output folder: ``mean``, ``lo``, ``hi`` (the outer percentile files), ``median``
    (``soc_p50.tif``), ``std``/``aoa`` if there."""
    folder = Path(folder)
    run = folder / "run.json"
    if not run.is_file():
        raise VizError(
            f"{folder} has no run.json; give a folder written by geesoil map (or a refresh version)"
        )
    doc = json.loads(run.read_text())
    outputs = [o for o in doc.get("outputs", []) if o.endswith(".tif")]
    files: dict[str, Path] = {"mean": folder / "soc_mean.tif"}
    # interval bounds are the percentiles either side of the median (p05 < p50 < p95: same-width names sort)
    pct = sorted(o for o in outputs if o.startswith("soc_p") and o != "soc_p50.tif")
    if len(pct) == 2:
        files["lo"], files["hi"] = folder / pct[0], folder / pct[1]
    for key, name in (("median", "soc_p50.tif"), ("std", "soc_std.tif"), ("aoa", "aoa.tif")):
        if name in outputs:
            files[key] = folder / name
    return {k: p for k, p in files.items() if p.is_file()}


# -- rendering -------------------------------------------------------------------------------------------------


def _warp_to_mercator(arr: np.ndarray, transform: Any, crs: Any, max_size: int) -> tuple[np.ndarray, Any]:
    from rasterio.transform import array_bounds, from_bounds
    from rasterio.warp import Resampling, calculate_default_transform, reproject, transform_bounds

    h, w = arr.shape
    west, south, east, north = array_bounds(h, w, transform)
    _, dw, dh = calculate_default_transform(crs, WEB_MERCATOR, w, h, west, south, east, north)
    scale = max(dw, dh) / max_size
    if scale > 1:  # coarser pixels over the same footprint
        dw, dh = max(1, round(dw / scale)), max(1, round(dh / scale))
    # exact footprint (pixels a little off square) so the overlay's bounds are the raster's bounds
    x0, y0, x1, y1 = transform_bounds(crs, WEB_MERCATOR, west, south, east, north, densify_pts=21)
    dst_t = from_bounds(x0, y0, x1, y1, dw, dh)
    out = np.full((dh, dw), np.nan)
    reproject(
        arr,
        out,
        src_transform=transform,
        src_crs=crs,
        dst_transform=dst_t,
        dst_crs=WEB_MERCATOR,
        src_nodata=np.nan,
        dst_nodata=np.nan,
        resampling=Resampling.nearest,
    )
    return out, dst_t


def _latlon_bounds(shape: tuple[int, int], transform: Any) -> tuple[tuple[float, float], tuple[float, float]]:
    from rasterio.transform import array_bounds
    from rasterio.warp import transform_bounds

    west, south, east, north = transform_bounds(WEB_MERCATOR, "EPSG:4326", *array_bounds(*shape, transform))
    return (south, west), (north, east)


def colorize(arr: np.ndarray, cmap: str, vmin: float, vmax: float) -> np.ndarray:
    """RGBA uint8 of ``arr`` through ``cmap`` between ``vmin`` and ``vmax``; NaN is transparent."""
    import matplotlib

    norm = np.clip((arr - vmin) / (vmax - vmin), 0, 1)
    rgba = np.round(matplotlib.colormaps[cmap](np.nan_to_num(norm)) * 255).astype(np.uint8)
    rgba[~np.isfinite(arr)] = 0
    return rgba


def render(
    source: str | Path | tuple[np.ndarray, Any, Any],
    *,
    cmap: str | None = SOC_CMAP,
    vmin: float | None = None,
    vmax: float | None = None,
    aoa: bool = False,
    max_size: int = MAX_OVERLAY_PX,
) -> Overlay:
    """A raster (path or ``(array, transform, crs)``) as an RGBA :class:`Overlay` in Web Mercator.

    ``aoa=True`` renders an AOA mask: outside (0) shaded :data:`AOA_OUTSIDE_RGBA`, inside (1) and nodata clear.
    """
    arr, transform, crs = read_band(source) if isinstance(source, str | Path) else source
    merc, t = _warp_to_mercator(np.asarray(arr, dtype="float64"), transform, crs, max_size)
    if aoa:
        rgba = np.zeros((*merc.shape, 4), np.uint8)
        rgba[merc == 0] = AOA_OUTSIDE_RGBA
        return Overlay(rgba, _latlon_bounds(merc.shape, t), None, None, None)
    if vmin is None or vmax is None:
        lo, hi = color_limits(np.asarray(arr, dtype="float64"))
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    cm = cmap or SOC_CMAP
    return Overlay(colorize(merc, cm, vmin, vmax), _latlon_bounds(merc.shape, t), vmin, vmax, cm)


def interval_width(lo: str | Path, hi: str | Path) -> tuple[np.ndarray, Any, Any]:
    """``hi - lo`` (g/kg) of two interval-bound COGs on the same grid, with their transform and CRS."""
    a, t, crs = read_band(lo)
    b, t2, crs2 = read_band(hi)
    if a.shape != b.shape or t != t2:
        raise VizError(f"{lo} and {hi} are not on the same grid; give the bounds of one map run")
    return b - a, t, crs


# -- interactive (geemap / ipyleaflet) -------------------------------------------------------------------------


def make_map(*, ee_initialize: bool = False, **kwargs: Any) -> Any:
    """A ``geemap.Map``; offline by default (``ee_initialize=False``)."""
    import geemap

    return geemap.Map(ee_initialize=ee_initialize, **kwargs)


def _have_tileserver() -> bool:
    try:
        import localtileserver  # noqa: F401
    except ImportError:
        return False
    return True


def add_overlay(m: Any, overlay: Overlay, name: str, *, opacity: float = 0.8) -> Any:
    """Add a rendered :class:`Overlay` to an ipyleaflet/geemap map as an ``ImageOverlay``; returns the layer."""
    from ipyleaflet import ImageOverlay

    layer = ImageOverlay(url=overlay.data_url(), bounds=overlay.bounds, name=name, opacity=opacity)
    m.add_layer(layer)
    return layer


def add_raster_layer(
    m: Any,
    path: str | Path | tuple[np.ndarray, Any, Any],
    name: str,
    *,
    cmap: str = SOC_CMAP,
    vmin: float | None = None,
    vmax: float | None = None,
    label: str | None = None,
    opacity: float = 0.8,
    colorbar: bool = True,
    tiles: bool = False,
) -> Any:
    """One continuous raster with a colour bar; ``tiles=True`` uses geemap's ``add_raster`` (localtileserver)."""
    overlay = render(path, cmap=cmap, vmin=vmin, vmax=vmax)
    if tiles and isinstance(path, str | Path) and _have_tileserver():
        m.add_raster(str(path), colormap=cmap, vmin=overlay.vmin, vmax=overlay.vmax, layer_name=name)
        layer = m.find_layer(name)
    else:
        layer = add_overlay(m, overlay, name, opacity=opacity)
    if colorbar:
        vis = {"min": overlay.vmin, "max": overlay.vmax, "palette": _palette(cmap)}
        m.add_colorbar(vis, label=label or name, layer_name=name, position="bottomright")
    return layer


def _palette(cmap: str, n: int = 9) -> list[str]:
    import matplotlib
    from matplotlib.colors import to_hex

    cm = matplotlib.colormaps[cmap]
    return [to_hex(cm(i / (n - 1))) for i in range(n)]


def add_run_layers(
    m: Any,
    folder: str | Path,
    *,
    opacity: float = 0.8,
    fit: bool = True,
    tiles: bool = False,
) -> dict[str, Any]:
    """Add a map run's layers: SOC mean, interval width (hi − lo) and the AOA mask when present.

    Returns the layers by key (``mean``, ``width``, ``aoa``). Colour bars name the units; the AOA gets a legend.
    """
    files = run_files(folder)
    layers: dict[str, Any] = {}
    mean = read_band(files["mean"])
    vmin, vmax = color_limits(mean[0])
    layers["mean"] = add_raster_layer(
        m,
        files["mean"],
        "SOC mean",
        vmin=vmin,
        vmax=vmax,
        label="SOC mean (g/kg)",
        opacity=opacity,
        tiles=tiles,
    )
    if "lo" in files:
        width = interval_width(files["lo"], files["hi"])
        label = f"interval width {files['lo'].stem[4:]}–{files['hi'].stem[4:]} (g/kg)"
        layers["width"] = add_raster_layer(
            m, width, "SOC interval width", cmap=WIDTH_CMAP, label=label, opacity=opacity
        )
    if "aoa" in files:
        layers["aoa"] = add_overlay(m, render(files["aoa"], aoa=True), "outside AOA", opacity=1.0)
        m.add_legend(
            title="Area of applicability",
            legend_dict={"outside (extrapolation)": AOA_OUTSIDE_HEX.lstrip("#")},
            layer_name="outside AOA",
        )
    if fit:
        (s, w), (n, e) = layers["mean"].bounds
        m.fit_bounds([[s, w], [n, e]])
    return layers


def _points(samples: pd.DataFrame | str | Path) -> pd.DataFrame:
    if isinstance(samples, pd.DataFrame):
        frame = samples
    else:
        p = Path(samples)
        if not p.is_file():
            raise VizError(f"samples file {p} not found")
        frame = pd.read_parquet(p) if p.suffix.lower() in (".parquet", ".pq") else pd.read_csv(p)
    if not {"lon", "lat"} <= set(frame.columns):
        raise VizError("samples need lon and lat columns (WGS84 degrees)")
    return frame[np.isfinite(frame["lon"]) & np.isfinite(frame["lat"])]


def add_samples(
    m: Any,
    samples: pd.DataFrame | str | Path,
    *,
    value: str | None = "oc_gkg",
    name: str = "samples",
    cmap: str = SOC_CMAP,
    vmin: float | None = None,
    vmax: float | None = None,
    radius: int = 4,
) -> Any:
    """Sample points as a GeoJSON layer, filled by ``value`` (when the column exists) on the SOC colour scale."""
    from ipyleaflet import GeoJSON
    from matplotlib.colors import to_hex

    frame = _points(samples)
    has_value = value is not None and value in frame.columns
    if has_value:
        vals = frame[value].to_numpy(float)
        lo, hi = color_limits(vals) if vmin is None or vmax is None else (vmin, vmax)
        import matplotlib

        cm = matplotlib.colormaps[cmap]
    feats = []
    for i, row in enumerate(frame.itertuples(index=False)):
        props: dict[str, Any] = {
            "style": {"radius": radius, "weight": 1, "color": "#222222", "fillOpacity": 0.9}
        }
        if has_value:
            v = vals[i]
            props[value] = None if not np.isfinite(v) else float(v)
            props["style"]["fillColor"] = (
                to_hex(cm(float(np.clip((v - lo) / (hi - lo), 0, 1)))) if np.isfinite(v) else "#ffffff"
            )
        else:
            props["style"]["fillColor"] = "#1f77b4"
        feats.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [float(row.lon), float(row.lat)]},
                "properties": props,
            }
        )
    layer = GeoJSON(
        data={"type": "FeatureCollection", "features": feats},
        name=name,
        point_style={"radius": radius, "fillOpacity": 0.9, "weight": 1},
    )
    m.add_layer(layer)
    return layer


# -- static (matplotlib) ---------------------------------------------------------------------------------------


def _extent(arr: np.ndarray, transform: Any) -> tuple[float, float, float, float]:
    from rasterio.transform import array_bounds

    west, south, east, north = array_bounds(*arr.shape, transform)
    return west, east, south, north


def _axes(ax: Any) -> tuple[Any, Any]:
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4.5), constrained_layout=True)
        return fig, ax
    return ax.figure, ax


def plot_raster(
    source: str | Path | tuple[np.ndarray, Any, Any],
    *,
    ax: Any = None,
    cmap: str = SOC_CMAP,
    vmin: float | None = None,
    vmax: float | None = None,
    title: str | None = None,
    label: str = "SOC (g/kg)",
    samples: pd.DataFrame | None = None,
) -> Any:
    """A raster in its own CRS with a colour bar (``label``); optional sample points (lon/lat, reprojected)."""
    arr, transform, crs = read_band(source) if isinstance(source, str | Path) else source
    if vmin is None or vmax is None:
        lo, hi = color_limits(arr)
        vmin, vmax = (lo if vmin is None else vmin), (hi if vmax is None else vmax)
    fig, ax = _axes(ax)
    im = ax.imshow(
        np.ma.masked_invalid(arr),
        extent=_extent(arr, transform),
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        interpolation="nearest",
    )
    fig.colorbar(im, ax=ax, label=label, shrink=0.85)
    if samples is not None:
        from pyproj import Transformer

        pts = _points(samples)
        x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(pts["lon"], pts["lat"])
        ax.scatter(x, y, s=8, c="k", marker=".", label="samples")
        ax.legend(loc="lower right", fontsize=8)
    ax.ticklabel_format(style="plain", useOffset=False)
    units = "°" if crs is not None and crs.is_geographic else "m"
    ax.set_xlabel(f"x ({units}, {crs.to_string() if crs else '?'})")
    ax.set_ylabel(f"y ({units})")
    ax.set_title(title or (Path(source).stem if isinstance(source, str | Path) else ""))
    return fig


def plot_interval_width(lo: str | Path, hi: str | Path, *, ax: Any = None, title: str | None = None) -> Any:
    """Map of the prediction interval width ``hi - lo`` (g/kg)."""
    width = interval_width(lo, hi)
    return plot_raster(
        width,
        ax=ax,
        cmap=WIDTH_CMAP,
        title=title or f"interval width ({Path(hi).stem[4:]} − {Path(lo).stem[4:]})",
        label="interval width (g/kg)",
    )


def plot_histogram(
    sources: str | Path | Sequence[str | Path],
    *,
    ax: Any = None,
    bins: int = 50,
    label: str = "SOC (g/kg)",
    observed: Sequence[float] | None = None,
) -> Any:
    """Histogram of the valid pixels of one or more rasters (e.g. mean, p05, p95); ``observed``: sample values."""
    paths = [sources] if isinstance(sources, str | Path) else list(sources)
    fig, ax = _axes(ax)
    arrays = [read_band(p)[0] for p in paths]
    vals = [a[np.isfinite(a)] for a in arrays]
    if not any(v.size for v in vals):
        raise VizError(f"{paths[0]}: no valid pixels to plot")
    edges = np.histogram_bin_edges(np.concatenate(vals), bins=bins)
    for p, v in zip(paths, vals, strict=True):
        ax.hist(v, bins=edges, alpha=0.6, label=Path(p).stem, density=True)
    if observed is not None:
        obs = np.asarray(observed, float)
        ax.hist(
            obs[np.isfinite(obs)],
            bins=edges,
            histtype="step",
            color="k",
            lw=1.5,
            density=True,
            label="samples",
        )
    ax.set_xlabel(label)
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    return fig


def plot_run(folder: str | Path, *, samples: pd.DataFrame | None = None) -> Any:
    """One figure with the SOC mean, the interval width and (when present) the AOA mask of a map run."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    files = run_files(folder)
    n = 1 + ("lo" in files) + ("aoa" in files)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 4.2), constrained_layout=True, squeeze=False)
    axes = list(axes[0])
    plot_raster(files["mean"], ax=axes[0], title="SOC mean", samples=samples)
    i = 1
    if "lo" in files:
        plot_interval_width(files["lo"], files["hi"], ax=axes[i])
        i += 1
    if "aoa" in files:
        arr, t, _ = read_band(files["aoa"])
        ax = axes[i]
        ax.imshow(
            np.ma.masked_invalid(arr),
            extent=_extent(arr, t),
            interpolation="nearest",
            cmap=ListedColormap([AOA_OUTSIDE_HEX, "#d9f0d3"]),
            vmin=0,
            vmax=1,
        )
        ax.legend(
            handles=[Patch(color="#d9f0d3", label="inside"), Patch(color=AOA_OUTSIDE_HEX, label="outside")],
            loc="lower right",
            fontsize=8,
            title="AOA",
        )
        ax.set_title("area of applicability")
        ax.ticklabel_format(style="plain", useOffset=False)
        ax.set_xlabel(axes[0].get_xlabel())
    return fig


# -- a self-contained HTML page ------------------------------------------------------------------------------------
#
# Why not ``geemap.Map.to_html``: ipywidgets' embed loads require.js and the widget manager from CDNs
# (cdnjs, jsdelivr), so offline or behind a firewall the page stays blank. This page needs no script and no network:
# the layers are PNG data URIs (the same Web Mercator renderings as the interactive overlays) with CSS colour bars.


def _gradient(cmap: str) -> str:
    return "linear-gradient(to right, " + ", ".join(_palette(cmap)) + ")"


def _panel(title: str, layers: Sequence[Overlay], legend: str) -> str:
    from html import escape

    base = layers[0]
    h, w = base.rgba.shape[:2]
    on_top = ' style="position:absolute;left:0;top:0"'
    imgs = "".join(
        f'<img alt="{escape(title)}" src="{o.data_url()}"{on_top if i else ""}>' for i, o in enumerate(layers)
    )
    (s, west), (n, e) = base.bounds
    return (
        f"<figure><figcaption>{escape(title)}</figcaption>"
        f'<div class="stack" style="aspect-ratio:{w}/{h}">{imgs}</div>'
        f'<div class="bounds">{s:.4f}°…{n:.4f}° lat, {west:.4f}°…{e:.4f}° lon</div>{legend}</figure>'
    )


def _colorbar(overlay: Overlay, label: str) -> str:
    from html import escape

    return (
        f'<div class="cbar"><div class="ramp" style="background:{_gradient(overlay.cmap or SOC_CMAP)}"></div>'
        f'<div class="ticks"><span>{overlay.vmin:.3g}</span><span>{escape(label)}</span>'
        f"<span>{overlay.vmax:.3g}</span></div></div>"
    )


_PAGE_CSS = """
body{font-family:sans-serif;margin:16px;background:#fff;color:#222}
h1{font-size:20px;margin:0 0 4px} .meta{font-size:13px;color:#555;margin-bottom:12px}
.panels{display:flex;flex-wrap:wrap;gap:16px} figure{margin:0;width:460px}
figcaption{font-weight:bold;margin-bottom:4px} .stack{position:relative;width:100%;background:#e8eef2}
.stack img{width:100%;height:100%;image-rendering:pixelated;display:block}
.bounds{font-size:11px;color:#666} .cbar{margin-top:6px} .ramp{height:14px;border:1px solid #999}
.ticks{display:flex;justify-content:space-between;font-size:12px}
.swatch{display:inline-block;width:14px;height:14px;vertical-align:middle;border:1px solid #999;margin-right:4px}
.legend{font-size:12px;margin-top:6px} img.quicklook{max-width:100%}
"""


def run_html(folder: str | Path, path: str | Path | None = None, *, title: str | None = None) -> Path:
    """Write a self-contained HTML page of a map run (no scripts, no network) and return its path.

    Panels: SOC mean with the outside-AOA shading on top (when the run has an AOA), the interval width (hi − lo) and
    the run's ``quicklook.png``, each with a colour bar or legend. ``path`` defaults to ``<folder>/map.html``.
    """
    from html import escape

    folder = Path(folder)
    files = run_files(folder)
    if "mean" not in files:
        raise VizError(f"{folder} has no soc_mean.tif; run geesoil map again (the run did not finish)")
    doc = json.loads((folder / "run.json").read_text())
    mean = read_band(files["mean"])
    vmin, vmax = color_limits(mean[0])
    mean_ov = render(mean, cmap=SOC_CMAP, vmin=vmin, vmax=vmax)
    panels = []
    if "aoa" in files:
        aoa_ov = render(files["aoa"], aoa=True)
        legend = (
            f'<div class="legend"><span class="swatch" style="background:{AOA_OUTSIDE_HEX}"></span>'
            "outside the area of applicability (extrapolation)</div>"
        )
        panels.append(_panel("SOC mean", [mean_ov, aoa_ov], _colorbar(mean_ov, "SOC mean (g/kg)") + legend))
    else:
        panels.append(_panel("SOC mean", [mean_ov], _colorbar(mean_ov, "SOC mean (g/kg)")))
    if "lo" in files:
        width_ov = render(interval_width(files["lo"], files["hi"]), cmap=WIDTH_CMAP)
        label = f"interval width {files['lo'].stem[4:]}–{files['hi'].stem[4:]} (g/kg)"
        panels.append(_panel("SOC interval width", [width_ov], _colorbar(width_ov, label)))
    quick = folder / "quicklook.png"
    if quick.is_file():
        uri = "data:image/png;base64," + base64.b64encode(quick.read_bytes()).decode("ascii")
        panels.append(
            f'<figure><figcaption>quick look</figcaption><img class="quicklook" alt="quick look" src="{uri}"></figure>'
        )
    summary = doc.get("summary", {})
    facts = [f"{k}: {v:.4g}" for k, v in summary.items() if isinstance(v, int | float)]
    grid = doc.get("grid", {})
    if grid:
        facts.insert(0, f"grid {grid.get('width')}×{grid.get('height')} px, {grid.get('crs')}")
    heading = title or f"geesoil map: {folder.name}"
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(heading)}</title><style>{_PAGE_CSS}</style></head><body>"
        f'<h1>{escape(heading)}</h1><div class="meta">{escape(" · ".join(facts))}</div>'
        f'<div class="panels">{"".join(panels)}</div></body></html>'
    )
    out = Path(path) if path is not None else folder / "map.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


__all__ = [
    "AOA_OUTSIDE_RGBA",
    "MAX_OVERLAY_PX",
    "SOC_CMAP",
    "WIDTH_CMAP",
    "Overlay",
    "VizError",
    "add_overlay",
    "add_raster_layer",
    "add_run_layers",
    "add_samples",
    "color_limits",
    "colorize",
    "interval_width",
    "make_map",
    "plot_histogram",
    "plot_interval_width",
    "plot_raster",
    "plot_run",
    "read_band",
    "render",
    "run_files",
    "run_html",
]
