"""Injected faults: disk full, read-only output, SIGKILL mid-run, concurrent runs, Earth Engine misbehaving.

After every fault the previous good state is intact (same bytes), nothing half-written is left under a final name,
and a rerun completes. Tests run as root, where ``chmod`` does not stop writes, so a read-only folder is simulated by
monkeypatching the rename that publishes a file to raise ``EROFS``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import ee
import ee_fake_server
import numpy as np
import pandas as pd
import pytest
import rasterio
import reliability
from shapely.geometry import box
from test_mapping_data import make_model, make_pack, make_training

from geesoil.ee import source as ee_source
from geesoil.ee.limits import RetryPolicy
from geesoil.ee.source import EarthEngineSource
from geesoil.errors import EarthEngineError, GeesoilError
from geesoil.mapping import run as map_run
from geesoil.mapping.run import TILES_DIR, MapRequest, run_map

fake_ee = ee_fake_server.fake_ee  # the fixture
REPO = Path(__file__).resolve().parents[1]
FAST = RetryPolicy(retries=3, base_s=0.01, max_s=0.05)
pytestmark = pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import geopandas as gpd

    root = tmp_path_factory.mktemp("faults")
    pack = make_pack(root / "pack")
    model = make_model(pack, root / "rf.geesoil", make_training(pack, n=150))
    aoi = root / "aoi.geojson"
    gpd.GeoDataFrame(geometry=[box(149.52, -30.28, 149.98, -30.005)], crs="EPSG:4326").to_file(aoi)
    return {"root": root, "pack": pack, "model": model, "aoi": aoi}


def _req(inputs: dict[str, Path], out: Path, **kw: object) -> MapRequest:
    base = dict(
        aoi=str(inputs["aoi"]),
        out=out,
        model=inputs["model"],
        covariates=(str(inputs["pack"]),),
        tile_size=16,
        progress=False,
    )
    base.update(kw)
    return MapRequest(**base)  # type: ignore[arg-type]


def _digest(out: Path) -> dict[str, str]:
    """sha256 of every published file (hidden tile store and temporaries excluded)."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.iterdir())
        if p.is_file() and not p.name.startswith(".")
    }


def _same_maps(out: Path, before: dict[str, str]) -> None:
    """A rerun gives the same files; run.json differs only in its timings and tile counts."""
    now = _digest(out)
    assert {k: v for k, v in now.items() if k != "run.json"} == {
        k: v for k, v in before.items() if k != "run.json"
    }
    assert set(now) == set(before)


def _no_debris(out: Path) -> None:
    assert not list(out.glob(".cog-*")), list(out.glob(".cog-*"))
    assert not list(out.glob(".tmp-*")), list(out.glob(".tmp-*"))
    assert not list((out / TILES_DIR).glob(".*.tmp"))


def _valid_cogs(out: Path, doc: dict) -> None:
    from rio_cogeo.cogeo import cog_validate

    for name in doc["outputs"]:
        assert (out / name).is_file(), name
        if name.endswith(".tif"):
            assert cog_validate(str(out / name), quiet=True)[0], name
            with rasterio.open(out / name) as src:
                assert np.isfinite(src.read(1)).all()


@pytest.fixture
def good(inputs: dict[str, Path], tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A finished map: the 'previous good state' each fault must leave intact."""
    out = tmp_path / "map"
    run_map(_req(inputs, out))
    return out, _digest(out)


def _enospc_after(n_ok: int, real):  # noqa: ANN001, ANN202
    calls = {"n": 0}

    def fn(*args, **kw):  # noqa: ANN002, ANN003, ANN202
        calls["n"] += 1
        if calls["n"] > n_ok:
            # write a little first, like a disk filling up mid-file
            target = args[1] if len(args) > 1 else None
            if isinstance(target, str | Path):
                Path(target).write_bytes(b"II*\x00partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args, **kw)

    return fn


def test_disk_full_during_cog_write_keeps_the_previous_maps(
    inputs: dict[str, Path], good: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import rio_cogeo.cogeo

    out, before = good
    monkeypatch.setattr(rio_cogeo.cogeo, "cog_translate", _enospc_after(1, rio_cogeo.cogeo.cog_translate))
    reliability.injected("ENOSPC during COG write")
    with pytest.raises(OSError) as info:
        run_map(_req(inputs, out))
    assert info.value.errno == errno.ENOSPC
    assert _digest(out) == before  # soc_mean.tif was rewritten identically; the others untouched
    _no_debris(out)
    monkeypatch.undo()
    doc = run_map(_req(inputs, out))
    assert doc["tiles"]["tiles_predicted"] == 0  # every tile reused
    _same_maps(out, before)
    _valid_cogs(out, doc)


def test_disk_full_during_tile_writes_leaves_no_partial_tile_and_resumes(
    inputs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "map"
    real = np.savez_compressed
    calls = {"n": 0}

    def savez(f, **arrays):  # noqa: ANN001, ANN003, ANN202
        calls["n"] += 1
        if calls["n"] > 3:
            f.write(b"PK\x03\x04partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(f, **arrays)

    monkeypatch.setattr(np, "savez_compressed", savez)
    reliability.injected("ENOSPC during tile writes")
    with pytest.raises(OSError):
        run_map(_req(inputs, out))
    tiles = list((out / TILES_DIR).glob("*.npz"))
    assert len(tiles) == 3
    assert not list((out / TILES_DIR).glob(".*.tmp"))
    assert not (out / "soc_mean.tif").exists() and not (out / "run.json").exists()
    monkeypatch.undo()
    doc = run_map(_req(inputs, out))
    assert doc["tiles"]["tiles_reused"] == 3
    _valid_cogs(out, doc)


def test_read_only_output_keeps_the_previous_run_json(
    inputs: dict[str, Path], good: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Root ignores chmod, so 'read-only' is a rename that fails with EROFS (the publish step of every writer)."""
    out, before = good
    real = os.replace

    def replace(src, dst):  # noqa: ANN001, ANN202
        if Path(dst).parent == out and Path(dst).name == "run.json":
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dst))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    reliability.injected("read-only output (EROFS on publish)")
    with pytest.raises(OSError):
        run_map(_req(inputs, out, overwrite=True))
    assert _digest(out) == before
    monkeypatch.undo()
    doc = run_map(_req(inputs, out))
    _valid_cogs(out, doc)


_KILLABLE = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    import rio_cogeo.cogeo
    from geesoil.mapping import run as map_run

    real = rio_cogeo.cogeo.cog_translate
    def slow(*a, **k):
        Path({flag!r}).write_text("in cog write")
        time.sleep(60)
        return real(*a, **k)
    rio_cogeo.cogeo.cog_translate = slow
    map_run.run_map(map_run.MapRequest(aoi={aoi!r}, out=Path({out!r}), model=Path({model!r}),
                    covariates=({pack!r},), tile_size=16, progress=False, overwrite=True))
    """
)


def test_sigkill_during_cog_write_then_rerun(
    inputs: dict[str, Path], good: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    out, before = good
    flag = tmp_path / "flag"
    script = _KILLABLE.format(
        tests=str(REPO / "tests"),
        flag=str(flag),
        aoi=str(inputs["aoi"]),
        out=str(out),
        model=str(inputs["model"]),
        pack=str(inputs["pack"]),
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not flag.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            assert time.monotonic() < deadline, "the child never reached the COG write"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        reliability.injected("SIGKILL during COG write")
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert _digest(out) == before  # the published COGs and run.json of the good run are untouched
    assert list(out.glob(".cog-*"))  # the killed writer's temporary folder...
    doc = run_map(_req(inputs, out))  # ...is removed by the next run, which completes
    _no_debris(out)
    _valid_cogs(out, doc)
    _same_maps(out, before)


def test_a_second_map_on_the_same_folder_is_refused_while_one_runs(
    inputs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "map"
    started, release = threading.Event(), threading.Event()
    real = map_run.predict_tile

    def gated(*args, **kw):  # noqa: ANN002, ANN003, ANN202
        started.set()
        release.wait(30)
        return real(*args, **kw)

    monkeypatch.setattr(map_run, "predict_tile", gated)
    result: dict[str, object] = {}
    first = threading.Thread(target=lambda: result.update(doc=run_map(_req(inputs, out))))
    first.start()
    try:
        assert started.wait(30)
        reliability.injected("concurrent map on the same output folder")
        with pytest.raises(GeesoilError, match="another geesoil map run") as info:
            run_map(_req(inputs, out))
        assert "\n" not in str(info.value)
    finally:
        release.set()
        first.join(60)
    doc = result["doc"]
    _valid_cogs(out, doc)  # type: ignore[arg-type]
    assert doc["tiles"]["tiles_predicted"] == doc["tiles"]["tiles"]  # type: ignore[index]
    # and once it finished, the folder is free again
    assert run_map(_req(inputs, out))["tiles"]["tiles_predicted"] == 0


# ---- Earth Engine ---------------------------------------------------------------------------------------------


def _points(n: int = 30, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"lon": rng.uniform(-10, 40, n), "lat": rng.uniform(-30, 50, n)})


def _source(**kw: object) -> EarthEngineSource:
    kw.setdefault("retry", FAST)
    kw.setdefault("progress", False)
    kw.setdefault("batch_size", 10)
    kw.setdefault("max_workers", 2)
    return EarthEngineSource("coarse-global-v1", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 429, "message": "Too many concurrent aggregations."},
        {"status": 503, "message": "The service is currently unavailable."},
        {"malformed": True},
    ],
    ids=["429-storm", "503-storm", "malformed"],
)
def test_ee_fault_storms_are_retried_within_bounds_then_one_line(
    fake_ee, fault: dict, tmp_path: Path
) -> None:  # noqa: ANN001
    fake_ee.inject(times=1000, **fault)
    reliability.injected(
        f"Earth Engine {'malformed answers' if fault.get('malformed') else fault['status']} storm", 4 * 3
    )
    t0 = time.perf_counter()
    with pytest.raises(EarthEngineError) as info:
        _source(cache_dir=tmp_path / "cache").sample(_points())
    assert time.perf_counter() - t0 < 10
    msg = str(info.value)
    assert "\n" not in msg and "3 of 3 batches failed" in msg and "run again to resume" in msg
    assert len(fake_ee.calls_to("computeFeatures")) <= 3 * (FAST.retries + 1)
    cache = tmp_path / "cache"
    assert not cache.exists() or not list(cache.iterdir())  # nothing cached from failed batches


def test_ee_transient_faults_recover_and_match_a_clean_run(fake_ee, tmp_path: Path) -> None:  # noqa: ANN001
    clean = _source().sample(_points())
    fake_ee.inject(times=2, status=429, message="Too many requests")
    fake_ee.inject(times=1, malformed=True)
    fake_ee.latency_s = 0.05
    reliability.injected("Earth Engine 429/malformed then recovery", 3)
    got = _source(cache_dir=tmp_path / "c").sample(_points())
    pd.testing.assert_frame_equal(got, clean)


def test_ee_request_timeouts_are_one_line_errors(fake_ee, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """A server slower than the request deadline: retried, then reported (not a hang, not a traceback)."""
    from geesoil.ee.auth import initialize

    monkeypatch.setattr(ee.deprecation, "_FetchDataCatalogStac", dict)
    initialize(
        project="test",
        url=fake_ee.url,
        login=ee_fake_server.fake_login(),
        environ={},
        connect_timeout_s=2,
        request_deadline_s=0.2,
    )
    fake_ee.latency_s = 0.5
    reliability.injected("Earth Engine request timeouts", 4)
    t0 = time.perf_counter()
    with pytest.raises(EarthEngineError) as info:
        _source(batch_size=30, max_workers=1).sample(_points())
    assert "\n" not in str(info.value)
    assert time.perf_counter() - t0 < 20


def test_ee_truncated_feature_arrays_are_reported(fake_ee, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    real = ee.data.computeFeatures

    def truncated(params):  # noqa: ANN001, ANN202
        page = real(params)
        page["features"] = page["features"][:-1]
        return page

    monkeypatch.setattr(ee.data, "computeFeatures", truncated)
    reliability.injected("Earth Engine truncated feature arrays", 3)
    with pytest.raises(EarthEngineError, match=r"returned 9 features for 10 points") as info:
        _source().sample(_points())
    assert "\n" not in str(info.value)


def test_ee_cache_write_disk_full_does_not_fail_the_extraction(
    fake_ee,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    cache = tmp_path / "cache"
    clean = _source().sample(_points())
    real = pd.DataFrame.to_parquet
    calls = {"n": 0}

    def to_parquet(self, path, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls["n"] += 1
        if calls["n"] == 2:
            Path(path).write_bytes(b"PAR1partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, path, *a, **k)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", to_parquet)
    reliability.injected("ENOSPC during Earth Engine cache writes")
    got = _source(cache_dir=cache, max_workers=1).sample(_points())
    pd.testing.assert_frame_equal(got, clean)  # values come back; only the cache misses a batch
    files = sorted(p.name for p in cache.iterdir())
    assert len([f for f in files if f.endswith(".parquet")]) == 2
    assert not [f for f in files if ".tmp" in f], files
    monkeypatch.undo()
    n_calls = len(fake_ee.calls_to("computeFeatures"))
    again = _source(cache_dir=cache).sample(_points())
    pd.testing.assert_frame_equal(again, clean)
    assert len(fake_ee.calls_to("computeFeatures")) == n_calls + 1  # only the uncached batch is fetched


def test_ee_cache_survives_concurrent_readers_and_a_rewriter(fake_ee, tmp_path: Path) -> None:  # noqa: ANN001
    cache = tmp_path / "cache"
    clean = _source(cache_dir=cache).sample(_points())
    n_calls = len(fake_ee.calls_to("computeFeatures"))
    files = sorted(cache.glob("*.parquet"))
    stop = threading.Event()

    def rewriter() -> None:  # rewrites every cache file in place, atomically, over and over
        while not stop.is_set():
            for f in files:
                df = pd.read_parquet(f)
                ee_source._write_cache(f, list(df.columns), df.to_numpy())

    results: list[pd.DataFrame] = []
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(3):
                results.append(_source(cache_dir=cache).sample(_points()))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=rewriter)] + [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads[1:]:
        t.join(60)
    stop.set()
    threads[0].join(30)
    reliability.injected("concurrent cache readers with a rewriter", 4)
    assert not errors, errors
    assert len(results) == 12
    for r in results:
        pd.testing.assert_frame_equal(r, clean)
    assert len(fake_ee.calls_to("computeFeatures")) == n_calls  # every read was served by the cache


def test_cli_map_on_a_full_disk_is_one_line_exit_2(
    inputs: dict[str, Path], good: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import rio_cogeo.cogeo
    from click.testing import CliRunner

    from cli.main import cli

    out, before = good
    monkeypatch.setattr(rio_cogeo.cogeo, "cog_translate", _enospc_after(0, rio_cogeo.cogeo.cog_translate))
    reliability.injected("ENOSPC during COG write (CLI)")
    args = ["map", "--aoi", str(inputs["aoi"]), "--model", str(inputs["model"]), "--covariates"]
    args += [str(inputs["pack"]), "--tile-size", "16", "--quiet", "-o", str(out)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2, (res.output, res.exception)
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0], res.stderr
    assert "Traceback" not in res.output
    assert _digest(out) == before


# ---- refresh publish -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["cog", "manifest"])
def test_refresh_publish_faults_keep_the_published_version(
    inputs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    import datetime as dt

    import rio_cogeo.cogeo

    from geesoil.refresh import load_job, read_manifest, run_job
    from geesoil.refresh import state as refresh_state

    monkeypatch.setenv("GEESOIL_CACHE_DIR", str(tmp_path / "cache"))
    scale = 0.01 * 111_319.49079327357
    job_path = tmp_path / "job.toml"
    job_path.write_text(
        f"""
name = "faults"
[aoi]
bbox = [149.5, -30.3, 150.0, -30.0]
[model]
file = "{inputs["model"]}"
[covariates]
sources = ["{inputs["pack"]}"]
window = "last 2 full years"
[grid]
scale = {scale!r}
crs = "EPSG:4326"
tile_size = 16
[output]
dir = "out"
""",
        encoding="utf-8",
    )
    job = load_job(job_path, workdir=tmp_path)
    v1 = run_job(job, today=dt.date(2025, 6, 1))
    out = job.out_dir
    published = _digest(out / v1.version)

    if where == "cog":
        monkeypatch.setattr(rio_cogeo.cogeo, "cog_translate", _enospc_after(1, rio_cogeo.cogeo.cog_translate))
    else:
        real = refresh_state.os.replace

        def replace(src, dst):  # noqa: ANN001, ANN202
            # the publishing write of the manifest (the one naming v2 as latest) hits a full disk
            if Path(dst).name == "manifest.json" and '"latest": "v2"' in Path(src).read_text():
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(src, dst)

        monkeypatch.setattr(refresh_state.os, "replace", replace)
    reliability.injected(f"ENOSPC during refresh publish ({where})")
    with pytest.raises((GeesoilError, OSError)):
        run_job(job, today=dt.date(2026, 2, 1))
    monkeypatch.undo()
    monkeypatch.setenv("GEESOIL_CACHE_DIR", str(tmp_path / "cache"))
    assert _digest(out / v1.version) == published  # the published version is untouched
    manifest = read_manifest(out, job)
    assert manifest["latest"] == v1.version
    assert where == "manifest" or not (out / "v2").exists()  # a COG failure never reaches the rename
    v2 = run_job(job, today=dt.date(2026, 2, 1))
    assert v2.version != v1.version and read_manifest(out, job)["latest"] == v2.version
    doc = __import__("json").loads((out / v2.version / "run.json").read_text())
    _valid_cogs(out / v2.version, doc)


def test_ee_torn_cache_files_of_a_killed_run_are_refetched(fake_ee, tmp_path: Path, caplog) -> None:  # noqa: ANN001
    """What a kill mid-write could leave: a stray temporary file and a final file cut short (a copy, a sync)."""
    cache = tmp_path / "cache"
    clean = _source(cache_dir=cache).sample(_points())
    files = sorted(cache.glob("*.parquet"))
    assert len(files) == 3
    raw = files[0].read_bytes()
    files[0].write_bytes(raw[: len(raw) // 3])
    files[1].with_suffix(".tmp4242-1").write_bytes(raw[:100])
    reliability.injected("torn Earth Engine cache files", 2)
    n_calls = len(fake_ee.calls_to("computeFeatures"))
    with caplog.at_level("WARNING"):
        again = _source(cache_dir=cache).sample(_points())
    pd.testing.assert_frame_equal(again, clean)
    assert len(fake_ee.calls_to("computeFeatures")) == n_calls + 1  # only the torn batch
    assert "ignoring unreadable cache file" in caplog.text
    third = _source(cache_dir=cache).sample(_points())  # the torn file was replaced by a good one
    pd.testing.assert_frame_equal(third, clean)
    assert len(fake_ee.calls_to("computeFeatures")) == n_calls + 1


_KILLABLE_EXTRACT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    import ee
    import pandas as pd
    from ee_fake_server import fake_login
    from geesoil.ee.auth import initialize
    from geesoil.ee.limits import RetryPolicy
    from geesoil.ee.source import EarthEngineSource

    ee.deprecation._FetchDataCatalogStac = dict
    initialize(project="test", url={url!r}, login=fake_login(), environ={{}}, connect_timeout_s=2)
    src = EarthEngineSource("coarse-global-v1", cache_dir={cache!r}, batch_size=5, max_workers=1, progress=False,
                            retry=RetryPolicy(retries=1, base_s=0.01, max_s=0.05))
    src.sample(pd.read_parquet({points!r}))
    """
)


def test_sigkill_during_ee_extraction_then_rerun_fetches_only_the_rest(fake_ee, tmp_path: Path) -> None:  # noqa: ANN001
    points = _points(30, seed=5)
    clean = _source().sample(points)
    points.to_parquet(tmp_path / "points.parquet")
    cache = tmp_path / "cache"
    script = _KILLABLE_EXTRACT.format(
        tests=str(REPO / "tests"), url=fake_ee.url, cache=str(cache), points=str(tmp_path / "points.parquet")
    )
    fake_ee.latency_s = 0.3  # each of the 6 batches takes a while: the kill lands mid-extraction
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while len(list(cache.glob("*.parquet"))) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            assert time.monotonic() < deadline, "the child never cached a batch"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        reliability.injected("SIGKILL during Earth Engine extraction")
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    fake_ee.latency_s = 0.0
    # the killed child's last request may still be answered (and recorded) by the server: let it drain
    deadline = time.monotonic() + 10
    while fake_ee._in_flight and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.1)
    done = len(list(cache.glob("*.parquet")))
    assert 2 <= done < 6
    n_calls = len(fake_ee.calls_to("computeFeatures"))
    again = _source(cache_dir=cache, batch_size=5).sample(points)
    pd.testing.assert_frame_equal(again, clean)
    assert len(fake_ee.calls_to("computeFeatures")) - n_calls == 6 - done  # only the unfinished batches
    assert len(list(cache.glob("*.parquet"))) == 6
