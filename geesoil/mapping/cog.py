"""Cloud-optimised GeoTIFFs from tiles: assemble a tiled GTiff window by window, then ``rio_cogeo.cog_translate``.

Only one tile is in memory at a time. The COG is written under a temporary name and renamed, so a reader never sees
a half-written file. Outputs are deflate-compressed, 512 × 512 tiled, with internal overviews, nodata, a band
description and dataset tags.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from geesoil.grid import Grid
from geesoil.mapping.memory import bounded_memory

#: Internal tile size of every output (the COG convention, and what ``--tile-size`` defaults to).
BLOCK = 512


def write_cog(
    path: str | Path,
    grid: Grid,
    tiles: Iterable[tuple[tuple[slice, slice], np.ndarray]],
    *,
    dtype: str,
    nodata: float,
    description: str,
    tags: Mapping[str, str] | None = None,
    units: str | None = None,
    overview_resampling: str = "average",
) -> Path:
    """Write the tiles (``(row slice, col slice), array``) of one band covering ``grid`` as a COG at ``path``.

    Overviews average continuous values (nodata excluded); pass ``overview_resampling="mode"`` for classes.
    """
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    str_tags = {str(k): str(v) for k, v in (tags or {}).items()}
    with (
        bounded_memory(),
        tempfile.TemporaryDirectory(prefix=".cog-", dir=path.parent) as tmpdir,
    ):
        raw = Path(tmpdir) / "raw.tif"
        profile = {
            "driver": "GTiff",
            "height": grid.height,
            "width": grid.width,
            "count": 1,
            "dtype": dtype,
            "crs": grid.crs,
            "transform": grid.affine,
            "nodata": nodata,
            "tiled": True,
            "blockxsize": BLOCK,
            "blockysize": BLOCK,
            "compress": "deflate",
        }
        with rasterio.open(raw, "w", **profile) as dst:
            for (rs, cs), arr in tiles:
                win = Window(cs.start, rs.start, cs.stop - cs.start, rs.stop - rs.start)
                dst.write(np.asarray(arr, dtype=dtype), 1, window=win)
            dst.set_band_description(1, description)
            if units:
                dst.update_tags(1, units=units)
            dst.update_tags(**str_tags)
        out_profile = cog_profiles.get("deflate")
        out_profile.update(blockxsize=BLOCK, blockysize=BLOCK)
        cog = Path(tmpdir) / "cog.tif"
        cog_translate(
            raw,
            cog,
            out_profile,
            nodata=nodata,
            add_mask=False,
            forward_band_tags=True,
            overview_resampling=overview_resampling,
            additional_cog_metadata=str_tags,
            quiet=True,
            in_memory=False,
        )
        os.replace(cog, path)
    return path
