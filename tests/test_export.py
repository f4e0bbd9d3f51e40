"""``geesoil export`` offline: a real map folder to a fake Cloud Storage server, then to a fake Earth Engine asset."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import ee
import gcs_fake_server
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from ee_fake_server import FakeEarthEngine, fake_login
from gcs_fake_server import FakeGcs
from test_mapping_data import make_model, make_pack, make_training

from cli.main import cli
from geesoil.mapping.run import MapRequest, run_map
from geesoil.publish.ee_asset import parse_asset_id
from geesoil.publish.folder import ExportError, asset_properties, property_key, read_map_folder
from geesoil.publish.gcs import GcsLocation, parse_gcs_url, upload_files
from geesoil.publish.run import default_location, export_to_ee_asset, export_to_gcs

fake_gcs = gcs_fake_server.fake_gcs  # the fixture
BUCKET = "test-bucket"
ASSET = "projects/my-ee-project/assets/soc/edge_v1"
IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@pytest.fixture(scope="module")
def mapped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real ``geesoil map`` output (mean, median, p05, p95, std, AOA) on the synthetic pack, with its .tiles/ left."""
    root = tmp_path_factory.mktemp("export")
    pack = make_pack(root / "pack")
    training = make_training(pack)
    model = make_model(pack, root / "rf.geesoil", training)
    samples = root / "train.csv"
    training.to_csv(samples, index=False)
    out = root / "map"
    run_map(
        MapRequest(
            aoi="149.52,-30.28,149.98,-30.01",
            out=out,
            model=model,
            covariates=(str(pack),),
            crs="EPSG:4326",
            tile_size=16,
            std=True,
            aoa=True,
            samples=samples,
            progress=False,
        )
    )
    assert (out / ".tiles").is_dir()
    return out


@pytest.fixture
def folder(mapped: Path, tmp_path: Path) -> Path:
    """A private copy of the map folder (tests may change files in it)."""
    return Path(shutil.copytree(mapped, tmp_path / "map"))


@pytest.fixture
def ee_server(monkeypatch: pytest.MonkeyPatch):
    """The fake Earth Engine server (no rasters needed) with ``ee`` initialised against it."""
    from geesoil.ee.auth import initialize

    server = FakeEarthEngine({}).start()
    monkeypatch.setattr(ee.deprecation, "_FetchDataCatalogStac", dict)
    monkeypatch.setattr("geesoil.ee.auth.find_login", lambda environ=None: fake_login())
    try:
        initialize(project="test", url=server.url, login=fake_login(), environ={}, connect_timeout_s=2)
        yield server
    finally:
        ee.Reset()
        server.stop()


def _published(folder: Path) -> list[str]:
    return sorted([*json.loads((folder / "run.json").read_text())["outputs"], "run.json"])


def _objects(fake: FakeGcs, prefix: str) -> dict[str, bytes]:
    return {n.removeprefix(prefix + "/"): b for (bk, n), b in fake.objects.items() if bk == BUCKET}


# ---- Cloud Storage ---------------------------------------------------------------------------------------------
def test_gcs_upload_of_a_map_folder_then_a_rerun_uploads_nothing(folder: Path, fake_gcs: FakeGcs) -> None:
    client = fake_gcs.client()
    loc = GcsLocation(BUCKET, "maps/edge")
    first = export_to_gcs(folder, loc, client)
    names = _published(folder)
    assert {"soc_mean.tif", "soc_p05.tif", "soc_p95.tif", "soc_std.tif", "aoa.tif", "quicklook.png"} <= set(
        names
    )
    got = _objects(fake_gcs, "maps/edge")
    assert sorted(got) == names  # nothing from .tiles/, nothing else
    assert all(got[n] == (folder / n).read_bytes() for n in names)
    assert sorted(first["uploaded"]) == names and first["skipped"] == []
    assert first["objects"]["soc_mean.tif"] == "gs://test-bucket/maps/edge/soc_mean.tif"
    assert first["bytes_uploaded"] == sum((folder / n).stat().st_size for n in names)
    n_uploads = len(fake_gcs.uploads())
    assert n_uploads == len(names)

    again = export_to_gcs(folder, loc, client)
    assert again["uploaded"] == [] and sorted(again["skipped"]) == names
    assert len(fake_gcs.uploads()) == n_uploads


def test_only_missing_or_changed_objects_are_uploaded(folder: Path, fake_gcs: FakeGcs) -> None:
    client = fake_gcs.client()
    loc = GcsLocation(BUCKET, "p")
    export_to_gcs(folder, loc, client)
    # an interrupted earlier export: one object gone, one with stale bytes of the same size
    del fake_gcs.objects[(BUCKET, "p/soc_p95.tif")]
    stale = bytearray(fake_gcs.objects[(BUCKET, "p/soc_mean.tif")])
    stale[-1] ^= 0xFF
    fake_gcs.objects[(BUCKET, "p/soc_mean.tif")] = bytes(stale)
    result = export_to_gcs(folder, loc, client)
    assert sorted(result["uploaded"]) == ["soc_mean.tif", "soc_p95.tif"]
    assert fake_gcs.objects[(BUCKET, "p/soc_mean.tif")] == (folder / "soc_mean.tif").read_bytes()


def test_large_files_go_up_in_resumable_chunks(
    tmp_path: Path, fake_gcs: FakeGcs, monkeypatch: pytest.MonkeyPatch
) -> None:
    import google.cloud.storage.blob as gblob

    monkeypatch.setattr(gblob, "_MAX_MULTIPART_SIZE", 100_000)  # the client's multipart limit (8 MiB)
    big = tmp_path / "big.tif"
    big.write_bytes(np.random.default_rng(0).bytes(700_000))
    result = upload_files([big], GcsLocation(BUCKET, ""), fake_gcs.client(), chunk_size=256 * 1024)
    assert result.uploaded == ["big.tif"]
    assert fake_gcs.objects[(BUCKET, "big.tif")] == big.read_bytes()
    puts = [c for c in fake_gcs.calls if c.method == "PUT"]
    assert [c.status for c in puts] == [308, 308, 200]  # 256 KiB + 256 KiB + the rest


def test_a_failed_upload_is_reported_and_a_rerun_uploads_only_the_rest(
    folder: Path, fake_gcs: FakeGcs
) -> None:
    loc = GcsLocation(BUCKET, "f")
    names = _published(folder)
    fake_gcs.fail_uploads(503, times=1, after=2)
    with pytest.raises(
        ExportError, match=r"gs://test-bucket/f: Cloud Storage refused the request \(ServiceUnavailable"
    ):
        export_to_gcs(folder, loc, fake_gcs.client(), retry=None)
    assert len(_objects(fake_gcs, "f")) == 2
    result = export_to_gcs(folder, loc, fake_gcs.client(), retry=None)
    assert len(result["uploaded"]) == len(names) - 2 and len(result["skipped"]) == 2
    assert _objects(fake_gcs, "f") == {n: (folder / n).read_bytes() for n in names}


def test_transient_errors_are_retried_by_the_client(tmp_path: Path, fake_gcs: FakeGcs) -> None:
    from google.api_core.retry import Retry
    from google.cloud.storage.retry import DEFAULT_RETRY

    f = tmp_path / "a.tif"
    f.write_bytes(b"x" * 1000)
    fake_gcs.fail_uploads(503, times=2)
    fast: Retry = DEFAULT_RETRY.with_delay(initial=0.01, maximum=0.05)
    result = upload_files([f], GcsLocation(BUCKET, ""), fake_gcs.client(), retry=fast)
    assert result.uploaded == ["a.tif"] and fake_gcs.objects[(BUCKET, "a.tif")] == f.read_bytes()
    assert [c.status for c in fake_gcs.uploads()] == [503, 503, 200]


def test_missing_bucket_is_a_one_line_error(folder: Path, fake_gcs: FakeGcs) -> None:
    with pytest.raises(ExportError, match="bucket 'no-such-bucket' not found"):
        export_to_gcs(folder, GcsLocation("no-such-bucket", "x"), fake_gcs.client())


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [("gs://b-1/a/b", "b-1", "a/b"), ("gcs://my.bucket/", "my.bucket", ""), ("gs://abc", "abc", "")],
)
def test_parse_gcs_url(url: str, bucket: str, prefix: str) -> None:
    assert parse_gcs_url(url) == GcsLocation(bucket, prefix)


@pytest.mark.parametrize(
    "url", ["s3://b/x", "gs://", "gs://Upper/x", "gs://ab", "gs://b-1/a//b", "gs://b-1/../x"]
)
def test_bad_gcs_urls_are_refused(url: str) -> None:
    with pytest.raises(ExportError):
        parse_gcs_url(url)


# ---- map folder and properties -----------------------------------------------------------------------------------
def test_properties_come_from_run_json_and_the_rasters(mapped: Path) -> None:
    mf = read_map_folder(mapped)
    props = asset_properties(mf)
    run = json.loads((mapped / "run.json").read_text())
    assert all(IDENT.match(k) for k in props) and all(
        isinstance(v, int | float | str) for v in props.values()
    )
    assert props["model_id"] == run["model"]["id"] and props["model_kind"] == run["model"]["kind"]
    assert props["alpha"] == 0.1 and props["geesoil_version"] == run["geesoil_version"]
    assert props["covariate_source"] == run["inputs"]["covariates"]
    assert props["mapped_area_km2"] > 0
    # the mean SOC property is the mean of the valid pixels of soc_mean.tif
    with rasterio.open(mapped / "soc_mean.tif") as src:
        arr = src.read(1, masked=True)
    assert props["mean_soc_gkg"] == pytest.approx(float(arr.mean()), rel=1e-4)
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", str(props["created"]))
    # the auto model fine-tuned on the samples has a median: soc_p50 beside the mean
    assert props["bands"] == "aoa, aoa_di, soc_mean, soc_p05, soc_p50, soc_p95, soc_std"
    assert props["mean_p50_gkg"] == run["summary"]["mean_p50_gkg"]


def test_property_keys_are_identifiers() -> None:
    assert property_key("aoa-inside fraction") == "aoa_inside_fraction"
    assert property_key("2nd") == "p_2nd"
    assert property_key("---") == "value"


def test_a_folder_without_run_json_or_with_a_missing_output_is_refused(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no run.json"):
        read_map_folder(tmp_path)
    (folder / "soc_p05.tif").unlink()
    with pytest.raises(ExportError, match="soc_p05.tif listed in run.json but missing"):
        read_map_folder(folder)


# ---- Earth Engine asset -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "asset_id",
    [ASSET, "projects/my-ee-project/assets/x", "projects/example.com:my-project/assets/a/b_c-d"],
)
def test_valid_asset_ids(asset_id: str) -> None:
    assert parse_asset_id(asset_id) == asset_id


@pytest.mark.parametrize(
    ("asset_id", "why"),
    [
        ("users/me/soc", "legacy users/"),
        ("my-ee-project/soc", "expected projects/<project>/assets/<name>"),
        ("projects/P/assets/soc", "not a Cloud project id"),
        ("projects/my-ee-project/assets/", "asset name may hold only"),
        ("projects/my-ee-project/assets/soc map", "asset name may hold only"),
        ("projects/my-ee-project/assets/a//b", "asset name may hold only"),
    ],
)
def test_bad_asset_ids_name_the_fix(asset_id: str, why: str) -> None:
    with pytest.raises(ExportError, match=re.escape(why)) as info:
        parse_asset_id(asset_id)
    assert "projects/my-ee-project/assets/soc/region_v1" in str(info.value)


def test_ee_asset_registers_one_cog_backed_image_with_a_band_per_layer(
    folder: Path, fake_gcs: FakeGcs, ee_server: FakeEarthEngine
) -> None:
    loc = default_location(ASSET, BUCKET, None)
    assert loc.prefix == "soc/edge_v1"
    summary = export_to_ee_asset(folder, ASSET, loc, fake_gcs.client(), progress=False)
    assert summary["asset"] == ASSET and summary["mode"] == "cog"
    calls = ee_server.calls_to("image:importExternal")
    assert len(calls) == 1 and calls[0].status == 200
    body = calls[0].body
    assert body["overwrite"] is False
    manifest = body["imageManifest"]
    assert manifest["name"] == ASSET and ee_server.assets[ASSET] == manifest
    layers = ["aoa", "aoa_di", "soc_mean", "soc_p05", "soc_p50", "soc_p95", "soc_std"]
    assert [b["id"] for b in manifest["bands"]] == layers == summary["bands"]
    # every band is backed by the uploaded copy of its own COG
    for ts in manifest["tilesets"]:
        (uri,) = ts["sources"][0]["uris"]
        bucket, _, name = uri.removeprefix("gs://").partition("/")
        assert fake_gcs.objects[(bucket, name)] == (folder / f"{ts['id']}.tif").read_bytes()
    bands = {b["id"]: b for b in manifest["bands"]}
    assert all(b["tilesetId"] == k and b["tilesetBandIndex"] == 0 for k, b in bands.items())
    with rasterio.open(folder / "aoa.tif") as a, rasterio.open(folder / "soc_mean.tif") as m:
        assert bands["aoa"]["missingData"] == {"values": [a.nodata]}
        assert bands["soc_mean"]["missingData"] == {"values": [m.nodata]}
    assert bands["aoa"]["pyramidingPolicy"] == "MODE" and bands["soc_p05"]["pyramidingPolicy"] == "MEAN"
    props = manifest["properties"]
    run = json.loads((folder / "run.json").read_text())
    assert props["mean_soc_gkg"] == pytest.approx(run["summary"]["mean_soc_gkg"])
    assert props["model_id"] == run["model"]["id"] and props["alpha"] == 0.1
    assert manifest["startTime"] == props["created"]


def test_existing_asset_is_refused_before_uploading_then_replaced_with_overwrite(
    folder: Path, fake_gcs: FakeGcs, ee_server: FakeEarthEngine
) -> None:
    loc = GcsLocation(BUCKET, "a")
    export_to_ee_asset(folder, ASSET, loc, fake_gcs.client())
    n_uploads = len(fake_gcs.uploads())
    (folder / "soc_mean.tif").write_bytes((folder / "soc_mean.tif").read_bytes() + b"\0")  # a newer map
    with pytest.raises(ExportError, match="already exists; add --overwrite"):
        export_to_ee_asset(folder, ASSET, loc, fake_gcs.client())
    assert len(fake_gcs.uploads()) == n_uploads
    summary = export_to_ee_asset(folder, ASSET, loc, fake_gcs.client(), overwrite=True)
    assert summary["uploaded"] == ["soc_mean.tif"]
    assert ee_server.calls_to("image:importExternal")[-1].body["overwrite"] is True


def test_a_bucket_outside_the_us_is_warned_about_for_cog_backed_assets(
    folder: Path, fake_gcs: FakeGcs, ee_server: FakeEarthEngine, caplog: pytest.LogCaptureFixture
) -> None:
    fake_gcs.locations[BUCKET] = "EUROPE-WEST1"
    with caplog.at_level("WARNING", logger="geesoil.publish.run"):
        export_to_ee_asset(folder, ASSET, GcsLocation(BUCKET, "w"), fake_gcs.client())
    assert "EUROPE-WEST1" in caplog.text and "--ingest" in caplog.text
    caplog.clear()
    fake_gcs.locations[BUCKET] = "us"
    with caplog.at_level("WARNING", logger="geesoil.publish.run"):
        export_to_ee_asset(folder, ASSET, GcsLocation(BUCKET, "w"), fake_gcs.client(), overwrite=True)
    assert caplog.text == ""


def test_ingest_starts_an_import_task(folder: Path, fake_gcs: FakeGcs, ee_server: FakeEarthEngine) -> None:
    summary = export_to_ee_asset(folder, ASSET, GcsLocation(BUCKET, "i"), fake_gcs.client(), ingest=True)
    assert summary["mode"] == "ingest" and summary["task"]
    (call,) = ee_server.calls_to("image:import")
    assert call.path.endswith("/projects/test/image:import")
    assert call.body["imageManifest"]["name"] == ASSET
    assert ee_server.calls_to("image:importExternal") == []


# ---- CLI ---------------------------------------------------------------------------------------------------------
def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["export", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_cli_gcs_export_prints_a_json_summary(folder: Path, fake_gcs: FakeGcs) -> None:
    args = ["--to", f"gs://{BUCKET}/maps/edge", str(folder), "--gcs-endpoint", fake_gcs.url, "--no-progress"]
    code, out, err = _cli(*args)
    assert code == 0, err
    summary = json.loads(out)
    assert sorted(summary["uploaded"]) == _published(folder)
    assert sorted(_objects(fake_gcs, "maps/edge")) == _published(folder)
    code, out, _ = _cli(*args)
    assert code == 0 and json.loads(out)["uploaded"] == []


def test_cli_ee_asset_export(folder: Path, fake_gcs: FakeGcs, ee_server: FakeEarthEngine) -> None:
    code, out, err = _cli(
        "--to", "ee-asset", ASSET, str(folder), "--gcs-bucket", BUCKET, "--gcs-prefix", "x/y",
        "--gcs-endpoint", fake_gcs.url, "--ee-project", "test", "--ee-url", ee_server.url, "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    assert summary["asset"] == ASSET and summary["gcs"] == "gs://test-bucket/x/y"
    uris = [ts["sources"][0]["uris"][0] for ts in ee_server.assets[ASSET]["tilesets"]]
    assert all(u.startswith("gs://test-bucket/x/y/") for u in uris)
    assert "fake-token" not in out + err  # credentials are never printed


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--to", "ee-asset", "users/me/soc", "{dir}", "--gcs-bucket", BUCKET], "legacy users/"),
        (["--to", "ee-asset", ASSET, "{dir}"], "needs --gcs-bucket"),
        (["--to", "ee-asset", "{dir}", "--gcs-bucket", BUCKET], "needs the asset id and the map folder"),
        (["--to", "ee-asset", ASSET, "{empty}", "--gcs-bucket", BUCKET], "no run.json"),
        (["--to", "ee-asset", ASSET, "{dir}", "--gcs-bucket", "Bad_Bucket"], "not a Cloud Storage bucket"),
        (["--to", "gs://b-1/x", "{empty}"], "no run.json"),
        (["--to", "s3://b-1/x", "{dir}"], "expected gs://BUCKET/PREFIX"),
        (["--to", "gs://b-1/x", "{dir}", "--gcs-bucket", BUCKET], "are for --to ee-asset"),
    ],
)
def test_cli_bad_inputs_exit_2_with_one_line(
    mapped: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    args = [a.format(dir=mapped, empty=tmp_path) for a in extra]
    code, _, err = _cli(*args)
    assert code == 2 and err.count("\n") == 1 and err.startswith("Error: "), err
    assert message in err


def test_cli_existing_asset_without_overwrite_exits_2(
    folder: Path, fake_gcs: FakeGcs, ee_server: FakeEarthEngine
) -> None:
    args = ["--to", "ee-asset", ASSET, str(folder), "--gcs-bucket", BUCKET, "--gcs-endpoint", fake_gcs.url]
    args += ["--ee-project", "test", "--ee-url", ee_server.url, "--no-progress"]
    assert _cli(*args)[0] == 0
    code, _, err = _cli(*args)
    assert code == 2 and err.count("\n") == 1 and "already exists; add --overwrite" in err
    code, _, err = _cli(*args, "--overwrite")
    assert code == 0, err
