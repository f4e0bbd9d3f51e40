"""What a user first sees, in a real browser: the HTML page of a map run screenshotted by headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image
from test_mapping_data import RES, make_model, make_pack, make_training

from geesoil import viz
from geesoil.mapping.run import MapRequest, run_map

BBOX = (149.5, -30.3, 150.0, -30.0)
WINDOW = (1000, 800)


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no chromium binary on CI; install it (apt-get install chromium) before the tests")
        pytest.skip("no chromium binary found (apt-get install chromium to run the browser check)")
    return exe


def screenshot(html: Path, png: Path, profile: Path) -> Path:
    """Screenshot ``html`` with headless Chromium at :data:`WINDOW` (no network, no sandbox: tests may run as root)."""
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--screenshot={png}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--virtual-time-budget=5000",
        html.resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert png.is_file(), f"chromium wrote no screenshot (rc {proc.returncode}): {proc.stderr[-2000:]}"
    return png


@pytest.mark.slow
def test_map_page_renders_in_headless_chromium(tmp_path: Path) -> None:
    exe = _chromium()  # skip (or fail on CI) before spending time on the map
    assert exe
    pack = make_pack(tmp_path / "pack")
    training = make_training(pack, n=150)
    model = make_model(pack, tmp_path / "m.geesoil", training)
    train = tmp_path / "train.parquet"
    training.to_parquet(train)
    out = tmp_path / "run"
    run_map(
        MapRequest(
            aoi=",".join(map(str, BBOX)),
            out=out,
            model=model,
            covariates=(str(pack),),
            scale=RES * 111_319.49079327357,
            crs="EPSG:4326",
            aoa=True,
            samples=train,
            progress=False,
        )
    )
    html = viz.run_html(out)
    assert html == out / "map.html"
    text = html.read_text()
    assert (
        "http://" not in text and "https://" not in text and "<script" not in text
    )  # nothing to fetch offline

    png = screenshot(html, tmp_path / "shot.png", tmp_path / "profile")
    shot = np.asarray(Image.open(png).convert("RGB"))
    assert shot.shape[:2] == (WINDOW[1], WINDOW[0])
    colours = np.unique(shot.reshape(-1, 3), axis=0)
    assert len(colours) > 20, f"only {len(colours)} colours: the page looks blank"

    # the first panel (SOC mean, 460 px wide from x = 16, below the heading) is mostly painted, not page white
    panel = shot[80:300, 20:470].reshape(-1, 3).astype(int)
    painted = (panel < 245).any(axis=1).mean()
    assert painted > 0.6, f"only {painted:.0%} of the SOC panel is painted"

    # the overlay's SOC colours are on screen: many panel pixels sit close to a YlOrBr colour of the mean's range
    mean, _, _ = viz.read_band(out / "soc_mean.tif")
    vmin, vmax = viz.color_limits(mean)
    ramp = matplotlib.colormaps[viz.SOC_CMAP](np.linspace(0, 1, 64))[:, :3] * 255
    dist = np.sqrt(((panel[:, None, :] - ramp[None, :, :]) ** 2).sum(-1)).min(axis=1)
    on_ramp = dist < 12
    assert on_ramp.mean() > 0.4, f"only {on_ramp.mean():.0%} of the SOC panel shows YlOrBr colours"
    # and more than a single shade of it: the map varies across the region
    assert len(np.unique(panel[on_ramp], axis=0)) > 10
    assert vmax > vmin


def test_run_html_names_a_folder_that_is_not_a_map_run(tmp_path: Path) -> None:
    with pytest.raises(viz.VizError, match="run.json"):
        viz.run_html(tmp_path)
