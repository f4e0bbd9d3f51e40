"""Tests for geesoil.refresh and ``geesoil refresh``: versions, no-op reruns, windows, retention, crashes, locks."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path

import ee
import gcs_fake_server
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from ee_fake_server import FakeEarthEngine, fake_login
from gcs_fake_server import FakeGcs
from rio_cogeo.cogeo import cog_validate
from test_mapping_data import make_model, make_pack, make_training

import geesoil.mapping.run as map_run
from cli.main import cli
from geesoil.refresh import (
    JobError,
    RefreshFailed,
    RefreshLocked,
    job_lock,
    load_job,
    read_manifest,
    resolve_window,
    run_job,
)

#: 0.01° pixels in EPSG:4326 (the synthetic pack's own grid): 50 × 30 pixels, 8 tiles of 16 px
SCALE_M = 0.01 * 111_319.49079327357
D1, D2 = dt.date(2025, 6, 1), dt.date(2026, 2, 1)  # "last 2 full years": 2023–2024, then 2024–2025


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("refresh_world")
    pack = make_pack(root / "pack")
    training = make_training(pack, n=120)
    model = make_model(pack, root / "model.geesoil", training)
    samples = root / "samples.csv"
    training[["lon", "lat", "oc_gkg"]].to_csv(samples, index=False)
    return {"pack": pack, "model": model, "samples": samples}


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEESOIL_CACHE_DIR", str(tmp_path / "cache"))


def write_job(
    folder: Path,
    world: dict[str, Path],
    *,
    extra_model: str = "",
    window: str = "last 2 full years",
    **grid: str,
) -> Path:
    grid_lines = "\n".join(f"{k} = {v}" for k, v in grid.items())
    text = f"""
name = "synthetic"
[aoi]
bbox = [149.5, -30.3, 150.0, -30.0]
[model]
file = "{world["model"]}"
{extra_model}
[covariates]
sources = ["{world["pack"]}"]
window = "{window}"
[grid]
scale = {SCALE_M!r}
crs = "EPSG:4326"
tile_size = 16
{grid_lines}
[output]
dir = "out"
[retention]
keep = 3
"""
    path = folder / "job.toml"
    path.write_text(text)
    return path


def test_rolling_windows_hand_checked() -> None:
    today = dt.date(2026, 11, 25)
    assert resolve_window("last 3 full years", today).as_strings() == ("2023-01-01", "2026-01-01")
    assert resolve_window("last 6 full months", dt.date(2026, 3, 15)).as_strings() == (
        "2025-09-01",
        "2026-03-01",
    )
    assert resolve_window("last 1 full month", dt.date(2026, 1, 31)).as_strings() == (
        "2025-12-01",
        "2026-01-01",
    )
    assert resolve_window("last 90 days", today).as_strings() == ("2026-08-27", "2026-11-25")
    for bad in ("3 years", "last 3 years", "last 0 full years", "last 2 full decades"):
        with pytest.raises(JobError, match="window"):
            resolve_window(bad, today)


def test_first_run_publishes_v1_and_rerun_is_a_fast_noop(tmp_path: Path, world: dict[str, Path]) -> None:
    job = load_job(write_job(tmp_path, world), tmp_path)
    first = run_job(job, today=D1)
    out = tmp_path / "out"
    assert (first.status, first.version, first.path) == ("published", "v1", out / "v1")
    for name in ("soc_mean.tif", "soc_p05.tif", "soc_p95.tif"):
        assert cog_validate(str(out / "v1" / name), quiet=True)[0]
    assert not (out / "v1" / ".tiles").exists() and not (out / ".staging").exists()
    assert os.readlink(out / "latest") == "v1"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["latest"] == "v1" and manifest["versions"][0]["window"] == ["2023-01-01", "2025-01-01"]
    assert manifest["runs"][-1]["status"] == "published"
    record = json.loads((out / "v1" / "refresh.json").read_text())
    assert record["fingerprint"] == first.fingerprint

    before = (out / "manifest.json").read_bytes()
    t0 = time.perf_counter()
    again = run_job(load_job(tmp_path / "job.toml", tmp_path), today=dt.date(2025, 12, 31))  # same window
    assert time.perf_counter() - t0 < 0.5
    assert (again.status, again.version, again.fingerprint) == ("up-to-date", "v1", first.fingerprint)
    assert (out / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "latest",
        "manifest.json",
        "v1",
    ]


def test_window_change_publishes_v2_and_retention_prunes(tmp_path: Path, world: dict[str, Path]) -> None:
    job = load_job(write_job(tmp_path, world), tmp_path)
    assert run_job(job, today=D1).version == "v1"
    second = run_job(job, today=D2)  # a new calendar year moves the rolling window
    assert (second.status, second.version, second.changed) == ("published", "v2", ["window"])
    out = tmp_path / "out"
    assert os.readlink(out / "latest") == "v2"
    # keep = 2 from now on: a third version prunes v1 (folder gone, recorded as pruned)
    text = (tmp_path / "job.toml").read_text().replace("keep = 3", "keep = 2")
    (tmp_path / "job.toml").write_text(text)
    third = run_job(load_job(tmp_path / "job.toml", tmp_path), today=dt.date(2027, 1, 5))
    assert (third.version, third.pruned) == ("v3", ["v1"])
    assert (
        not (out / "v1").exists()
        and (out / "v2" / "run.json").is_file()
        and (out / "v3" / "run.json").is_file()
    )
    status = {v["version"]: v["status"] for v in read_manifest(out, job)["versions"]}
    assert status == {"v1": "pruned", "v2": "published", "v3": "published"}


def test_samples_change_finetunes_and_publishes_v2(tmp_path: Path, world: dict[str, Path]) -> None:
    samples = tmp_path / "samples.csv"
    frame = pd.read_csv(world["samples"])
    frame.to_csv(samples, index=False)
    job_file = write_job(tmp_path, world, extra_model='samples = "samples.csv"\nstrategy = "rf"')
    first = run_job(load_job(job_file, tmp_path), today=D1)
    out = tmp_path / "out"
    assert first.version == "v1" and (out / "v1" / "model.geesoil").is_file()
    run1 = json.loads((out / "v1" / "run.json").read_text())
    assert run1["inputs"]["model"].endswith("model.geesoil")
    assert run_job(load_job(job_file, tmp_path), today=D1).status == "up-to-date"
    frame["oc_gkg"] = frame["oc_gkg"] * 2  # new lab results: twice the carbon everywhere
    frame.to_csv(samples, index=False)
    second = run_job(load_job(job_file, tmp_path), today=D1)
    assert (second.version, second.changed) == ("v2", ["samples"])
    mean1 = json.loads((out / "v1" / "run.json").read_text())["summary"]["mean_soc_gkg"]
    mean2 = json.loads((out / "v2" / "run.json").read_text())["summary"]["mean_soc_gkg"]
    assert 1.6 < mean2 / mean1 < 2.4  # the refit model saw the new samples


def test_crash_mid_run_keeps_latest_and_rerun_resumes(
    tmp_path: Path, world: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    job = load_job(write_job(tmp_path, world), tmp_path)
    run_job(job, today=D1)
    out = tmp_path / "out"
    real = map_run.predict_tile
    calls = {"n": 0}

    def crashing(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("injected crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(map_run, "predict_tile", crashing)
    with pytest.raises(RefreshFailed, match="injected crash"):
        run_job(job, today=D2)
    manifest = read_manifest(out, job)
    assert manifest["latest"] == "v1" and os.readlink(out / "latest") == "v1"
    assert manifest["runs"][-1]["status"] == "failed" and "injected crash" in manifest["runs"][-1]["error"]
    assert not (out / "v2").exists()
    assert len(list((out / ".staging").glob("*/.tiles/*"))) >= 3  # finished tiles are kept for the rerun

    counted = {"n": 0}

    def counting(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        counted["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(map_run, "predict_tile", counting)
    result = run_job(job, today=D2)
    assert result.version == "v2" and os.readlink(out / "latest") == "v2"
    assert counted["n"] == 8 - 3  # only the tiles the crashed run did not finish
    runs = read_manifest(out, job)["runs"]
    assert runs[-1]["resumed"] is True and runs[-1]["status"] == "published"
    with (
        __import__("rasterio").open(out / "v2" / "soc_mean.tif") as a,
        __import__("rasterio").open(out / "v1" / "soc_mean.tif") as b,
    ):
        assert np.array_equal(a.read(1), b.read(1))  # same model and pack: the resumed map equals a clean one


def test_orphan_version_from_an_interrupted_publish_is_replaced(
    tmp_path: Path, world: dict[str, Path]
) -> None:
    job = load_job(write_job(tmp_path, world), tmp_path)
    run_job(job, today=D1)
    out = tmp_path / "out"
    (out / "v2").mkdir()  # renamed into place, but the manifest never named it
    (out / "v2" / "junk.tif").write_bytes(b"half")
    result = run_job(job, today=D2)
    assert result.version == "v2" and not (out / "v2" / "junk.tif").exists()


def test_concurrent_run_is_refused(tmp_path: Path, world: dict[str, Path]) -> None:
    job_file = write_job(tmp_path, world)
    job = load_job(job_file, tmp_path)
    with job_lock(job.out_dir, job.name):
        with pytest.raises(RefreshLocked, match="another refresh"):
            run_job(job, today=D1)
        res = CliRunner().invoke(cli, ["refresh", str(job_file), "--workdir", str(tmp_path)])
    assert res.exit_code == 1
    assert "another refresh of job 'synthetic' is running" in res.stderr
    assert not (job.out_dir / "v1").exists()
    assert run_job(job, today=D1).version == "v1"  # the lock is gone with its holder


def test_cli_json_logs_and_failure_exit_code(tmp_path: Path, world: dict[str, Path]) -> None:
    job_file = write_job(tmp_path, world)
    args = [
        "refresh",
        str(job_file),
        "--workdir",
        str(tmp_path),
        "--log-format",
        "json",
        "--today",
        "2025-06-01",
    ]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["status"] == "published"
    events = [json.loads(line)["event"] for line in res.stderr.splitlines() if line.strip()]
    assert events[0] == "start" and events[-1] == "published"
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0 and json.loads(res.stdout)["status"] == "up-to-date"

    # an AOI outside the covariate pack: the job file is fine, the run fails (exit 1, reason recorded)
    text = job_file.read_text().replace(
        "bbox = [149.5, -30.3, 150.0, -30.0]", "bbox = [10.0, 50.0, 10.5, 50.3]"
    )
    job_file.write_text(text)
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1
    assert "outside" in json.loads(res.stderr.splitlines()[-1])["message"]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["latest"] == "v1" and "outside" in manifest["runs"][-1]["error"]


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (("tile_size = 16", "tile_size = 16\nscael = 3"), ["grid.scael", "unknown key"]),
        (("tile_size = 16", 'tile_size = "big"'), ["grid.tile_size", "an integer"]),
        (("tile_size = 16", "tile_size = true"), ["grid.tile_size", "an integer"]),
        (('window = "last 2 full years"', 'window = "recently"'), ["covariates.window", "recently"]),
        (('window = "last 2 full years"', 'start = "2024-13-01"'), ["covariates.start", "ISO date"]),
        (("[output]", '[output]\ngcs = "s3://bucket/soc"'), ["output.gcs", "s3://bucket/soc"]),
        (('dir = "out"', ""), ["output.dir"]),
        (("keep = 3", "keep = 0"), ["retention.keep", "at least 1"]),
        (("[model]", "[modle]"), ["modle"]),
        (('name = "synthetic"', 'name = "synthetic"\n[aoi'), ["not valid TOML"]),
    ],
)
def test_bad_job_files_exit_2_naming_the_key(
    tmp_path: Path, world: dict[str, Path], edit: tuple[str, str], words: list[str]
) -> None:
    job_file = write_job(tmp_path, world)
    text = job_file.read_text()
    assert edit[0] in text
    job_file.write_text(text.replace(edit[0], edit[1], 1))
    res = CliRunner().invoke(cli, ["refresh", str(job_file), "--workdir", str(tmp_path)])
    assert res.exit_code == 2, res.output
    assert str(job_file) in res.stderr
    for w in words:
        assert w in res.stderr
    assert not (tmp_path / "out").exists()


def test_missing_input_files_are_named(tmp_path: Path, world: dict[str, Path]) -> None:
    job_file = write_job(tmp_path, world, extra_model='samples = "nowhere.csv"')
    with pytest.raises(JobError, match=r"model\.samples = 'nowhere.csv': no such file"):
        load_job(job_file, tmp_path)
    job_file.write_text(job_file.read_text().replace(str(world["model"]), "gone.geesoil"))
    with pytest.raises(JobError, match=r"model\.file = 'gone.geesoil'"):
        load_job(job_file, tmp_path)
    res = CliRunner().invoke(cli, ["refresh", str(tmp_path / "absent.toml")])
    assert res.exit_code == 2 and "absent.toml not found" in res.stderr


def test_demo_job_resolves_assets_against_the_repo(tmp_path: Path) -> None:
    demo = Path(__file__).resolve().parents[1] / "cli" / "schedules" / "demo.toml"
    job = load_job(demo, tmp_path)
    assert job.out_dir == tmp_path / "edgeroi"
    assert job.model.name == "global-starter-v1.geesoil" and job.model.is_file()
    assert Path(job.aoi).name == "edgeroi.geojson" and job.sources == ("starter",)
    assert job.window_for(dt.date(2026, 11, 25)).as_strings() == ("2023-01-01", "2026-01-01")


def test_schedule_examples_run_the_shipped_job() -> None:
    yaml = pytest.importorskip("yaml")

    folder = Path(__file__).resolve().parents[1] / "cli" / "schedules"
    cron = [
        ln for ln in (folder / "crontab.example").read_text().splitlines() if ln and not ln.startswith("#")
    ]
    assert len(cron) == 1 and len(cron[0].split(None, 5)) == 6  # five time fields and the command
    assert "geesoil refresh" in cron[0] and "--log-format json" in cron[0]
    service = (folder / "geesoil-refresh.service").read_text()
    assert "Type=oneshot" in service and "ExecStart=" in service and "demo.toml" in service
    assert "OnCalendar=" in (folder / "geesoil-refresh.timer").read_text()
    flow = yaml.safe_load((folder / "github-actions-refresh.yml").read_text())
    steps = flow["jobs"]["refresh"]["steps"]
    run_lines = "\n".join(s.get("run", "") for s in steps)
    assert (
        "GOOGLE_APPLICATION_CREDENTIALS" in run_lines
        and "geesoil refresh cli/schedules/demo.toml" in run_lines
    )
    assert flow[True]["schedule"][0]["cron"]  # YAML 1.1 reads the key `on` as True


def test_injected_clock_moves_a_rolling_window(tmp_path: Path, world: dict[str, Path]) -> None:
    job = load_job(write_job(tmp_path, world, window="last 3 full months"), tmp_path)
    assert run_job(job, clock=lambda: dt.date(2026, 3, 10)).version == "v1"
    assert run_job(job, clock=lambda: dt.date(2026, 3, 31)).status == "up-to-date"
    moved = run_job(job, clock=lambda: dt.date(2026, 4, 1))
    assert (moved.version, moved.changed) == ("v2", ["window"])
    windows = [v["window"] for v in read_manifest(tmp_path / "out", job)["versions"]]
    assert windows == [["2025-12-01", "2026-03-01"], ["2026-01-01", "2026-04-01"]]


# ---- remote publishing: output.gcs and output.ee_asset ---------------------------------------------------------
fake_gcs = gcs_fake_server.fake_gcs  # the fixture
BUCKET = "test-bucket"


@pytest.fixture
def ee_server(monkeypatch: pytest.MonkeyPatch):
    """The fake Earth Engine server; the job's ``initialize()`` finds it through $GEESOIL_EE_URL."""
    server = FakeEarthEngine({}).start()
    monkeypatch.setattr(ee.deprecation, "_FetchDataCatalogStac", dict)
    monkeypatch.setattr("geesoil.ee.auth.find_login", lambda environ=None: fake_login())
    monkeypatch.setenv("GEESOIL_EE_URL", server.url)
    try:
        yield server
    finally:
        ee.Reset()
        server.stop()


def with_output(job_file: Path, lines: str) -> Path:
    job_file.write_text(job_file.read_text().replace("[output]", "[output]\n" + lines, 1))
    return job_file


def test_gcs_output_uploads_each_version_under_its_own_prefix(
    tmp_path: Path, world: dict[str, Path], fake_gcs: FakeGcs
) -> None:
    job_file = with_output(
        write_job(tmp_path, world), f'gcs = "gs://{BUCKET}/soc/edge"\ngcs_endpoint = "{fake_gcs.url}"'
    )
    job = load_job(job_file, tmp_path)
    assert run_job(job, today=D1).version == "v1"
    v1 = tmp_path / "out" / "v1"
    names = sorted([*json.loads((v1 / "run.json").read_text())["outputs"], "run.json"])
    got = {n.removeprefix("soc/edge/v1/"): b for (bk, n), b in fake_gcs.objects.items() if bk == BUCKET}
    assert sorted(got) == names and all(got[n] == (v1 / n).read_bytes() for n in names)
    remote = read_manifest(tmp_path / "out", job)["versions"][0]["remote"]
    assert remote["status"] == "published" and remote["targets"] == {"gcs": f"gs://{BUCKET}/soc/edge/v1"}
    assert remote["objects"]["soc_mean.tif"] == f"gs://{BUCKET}/soc/edge/v1/soc_mean.tif"
    n_uploads = len(fake_gcs.uploads())
    assert run_job(job, today=D1).status == "up-to-date" and len(fake_gcs.uploads()) == n_uploads


def test_ee_asset_output_registers_name_underscore_version(
    tmp_path: Path, world: dict[str, Path], fake_gcs: FakeGcs, ee_server: FakeEarthEngine
) -> None:
    asset = "projects/my-ee-project/assets/soc/edge"
    job_file = with_output(
        write_job(tmp_path, world),
        f'ee_asset = "{asset}"\ngcs_bucket = "{BUCKET}"\ngcs_endpoint = "{fake_gcs.url}"\nee_project = "test"',
    )
    job = load_job(job_file, tmp_path)
    assert run_job(job, today=D1).version == "v1"
    assert f"{asset}_v1" in ee_server.assets
    uris = [ts["sources"][0]["uris"][0] for ts in ee_server.assets[f"{asset}_v1"]["tilesets"]]
    assert uris and all(u.startswith(f"gs://{BUCKET}/soc/edge_v1/") for u in uris)
    remote = read_manifest(tmp_path / "out", job)["versions"][0]["remote"]
    assert remote["status"] == "published" and remote["ee_asset"] == f"{asset}_v1"


@pytest.mark.parametrize(
    ("lines", "words"),
    [
        ('gcs = "gs://Bad_Bucket!/soc"', ["output.gcs", "Bad_Bucket!"]),
        ('ee_asset = "users/me/soc"\ngcs_bucket = "b-ok"', ["output.ee_asset", "users/"]),
        ('ee_asset = "projects/my-ee-project/assets/soc"', ["output.ee_asset", "needs a bucket"]),
        ('ee_asset = "projects/my-ee-project/assets/soc.v1"\ngcs_bucket = "b-ok"', ["output.ee_asset"]),
        ('gcs = "gs://b-ok/soc"\ngcs_endpoint = "localhost:4443"', ["output.gcs_endpoint", "http"]),
        ('gcs_bucket = "b-ok"', ["output.gcs_bucket", "only used with output.ee_asset"]),
        ("gcs = 3", ["output.gcs", "a string"]),
    ],
)
def test_bad_remote_outputs_exit_2_naming_the_key(
    tmp_path: Path, world: dict[str, Path], lines: str, words: list[str]
) -> None:
    job_file = with_output(write_job(tmp_path, world), lines)
    res = CliRunner().invoke(cli, ["refresh", str(job_file), "--workdir", str(tmp_path)])
    assert res.exit_code == 2, res.output
    for w in words:
        assert w in res.stderr
    assert not (tmp_path / "out").exists()


def test_failed_upload_exits_1_and_the_rerun_only_uploads(
    tmp_path: Path, world: dict[str, Path], fake_gcs: FakeGcs, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_file = with_output(
        write_job(tmp_path, world), f'gcs = "gs://{BUCKET}/soc"\ngcs_endpoint = "{fake_gcs.url}"'
    )
    args = ["refresh", str(job_file), "--workdir", str(tmp_path), "--today", "2025-06-01"]
    fake_gcs.fail_uploads(status=403, times=1, after=2)
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1, res.output
    assert "v1 is published locally but the upload failed" in res.stderr and "403" in res.stderr
    out = tmp_path / "out"
    entry = json.loads((out / "manifest.json").read_text())["versions"][0]
    assert entry["status"] == "published" and entry["remote"]["status"] == "failed"
    assert os.readlink(out / "latest") == "v1"

    def no_mapping(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the rerun must not map again")

    monkeypatch.setattr(map_run, "predict_tile", no_mapping)
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["status"] == "remote-published"
    manifest = json.loads((out / "manifest.json").read_text())
    assert [v["version"] for v in manifest["versions"]] == ["v1"]
    assert manifest["versions"][0]["remote"]["status"] == "published"
    v1 = out / "v1"
    for name in [*json.loads((v1 / "run.json").read_text())["outputs"], "run.json"]:
        assert fake_gcs.objects[(BUCKET, f"soc/v1/{name}")] == (v1 / name).read_bytes()
    assert CliRunner().invoke(cli, args).exit_code == 0  # and now a plain no-op
