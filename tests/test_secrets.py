"""Credentials never leak: a freshly generated service-account key is used through the Earth Engine login and its
error paths, an extraction from the fake Earth Engine server, a ``geesoil map`` and a ``geesoil refresh`` run, and
every log record, stderr line, error message and file written is searched for the key's secrets.

Secrets: the PEM private key (any 40-character run of its base64 body), ``private_key_id``, the OAuth access token
the key is exchanged for, and ``client_id``. The service account's e-mail is an identity, not a secret: login
messages name it on purpose (so a user knows which account was used), but it must not be written into artefacts.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
import socket
from pathlib import Path

import ee
import ee_fake_server
import pandas as pd
import pytest
import reliability
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from shapely.geometry import box
from test_mapping_data import make_model, make_pack, make_training

from cli.main import cli
from geesoil.ee import auth
from geesoil.errors import EarthEngineError

fake_ee = ee_fake_server.fake_ee  # the fixture
pytestmark = pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning")
ACCESS_TOKEN = "ya29.a0-SECRET-" + secrets.token_urlsafe(48)


class Key:
    """A service-account key file in ``folder`` and the strings that must never be written anywhere."""

    def __init__(self, folder: Path, token_uri: str = "https://oauth2.googleapis.com/token") -> None:
        pk = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.pem = pk.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        self.key_id = secrets.token_hex(20)
        self.client_id = str(secrets.randbelow(10**20) + 10**20)
        self.email = f"geesoil-ci-{secrets.token_hex(4)}@proj-{secrets.token_hex(3)}.iam.gserviceaccount.com"
        self.info = {
            "type": "service_account",
            "project_id": "geesoil-test-project",
            "private_key_id": self.key_id,
            "private_key": self.pem,
            "client_email": self.email,
            "client_id": self.client_id,
            "token_uri": token_uri,
        }
        self.path = folder / "sa-key.json"
        self.path.write_text(json.dumps(self.info), encoding="utf-8")

    def write(self, **changes: object) -> Path:
        self.path.write_text(json.dumps({**self.info, **changes}), encoding="utf-8")
        return self.path

    @property
    def secrets(self) -> list[str]:
        body = "".join(self.pem.strip().splitlines()[1:-1])
        chunks = [body[i : i + 40] for i in range(0, len(body) - 40, 40)]
        return [self.key_id, self.client_id, ACCESS_TOKEN, *chunks]


def assert_clean(key: Key, texts: dict[str, str], *, identity_ok: bool = True) -> None:
    """No secret (and, unless ``identity_ok``, not the e-mail either) in any of ``texts`` (name -> content)."""
    checks = key.secrets + ([] if identity_ok else [key.email])
    reliability.tried("secrets: texts searched for key material", len(texts))
    for name, text in texts.items():
        for s in checks:
            assert s not in text, f"{name} leaks {s[:12]}..."
        assert "PRIVATE KEY" not in text, name


def files_under(*roots: Path) -> dict[str, str]:
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")) if root.is_dir() else [root]:
            if p.is_file():
                out[str(p)] = p.read_bytes().decode("latin-1")  # binary-safe: every byte is one character
    return out


@pytest.fixture
def key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Key:
    k = Key(tmp_path)
    monkeypatch.setenv(auth.CREDENTIALS_ENV, str(k.path))
    return k


def _logs(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture) -> dict[str, str]:
    captured = capsys.readouterr()
    return {
        "log records": "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records),
        "stdout": captured.out,
        "stderr": captured.err,
    }


# ---- login and its error paths ----------------------------------------------------------------------------------


def test_login_error_paths_never_show_key_material(
    key: Key, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    messages: dict[str, str] = {}
    env = {auth.CREDENTIALS_ENV: str(key.path)}
    login = auth.find_login(env)
    assert login.service_account and key.email in login.source
    messages["login source"] = login.source

    body = key.pem.splitlines()
    broken = {
        "truncated private key": {"private_key": "\n".join(body[: len(body) // 2])},
        "garbled private key": {"private_key": key.pem.replace("M", "#", 3)},
        "no client_email": {"client_email": None},
        "no token_uri": {"token_uri": None},
        "unknown type": {"type": "external_account"},
        "null private key": {"private_key": None},
    }
    for what, change in broken.items():
        key.write(**change)
        with pytest.raises(EarthEngineError) as info:
            auth.find_login(env)
        messages[what] = str(info.value)
        assert "\n" not in str(info.value)
    key.write()
    raw = key.path.read_text()
    key.path.write_text(raw[: len(raw) // 2], encoding="utf-8")  # a truncated download
    with pytest.raises(EarthEngineError) as info:
        auth.find_login(env)
    messages["truncated JSON"] = str(info.value)
    key.write()
    reliability.tried("secrets: login error paths", len(messages))

    # unreachable endpoint and unreachable token endpoint
    with pytest.raises(EarthEngineError) as info:
        auth.initialize(project="p", url="http://127.0.0.1:9", environ=env, connect_timeout_s=1)
    messages["endpoint unreachable"] = str(info.value)
    key.write(token_uri="http://127.0.0.1:9/token")
    with socket.socket() as listening:  # a reachable endpoint, so the token endpoint is what fails
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        url = f"http://127.0.0.1:{listening.getsockname()[1]}"
        with pytest.raises(EarthEngineError, match="127.0.0.1:9/token") as info:
            auth.initialize(project="p", url=url, environ=env, connect_timeout_s=1)
    messages["token endpoint unreachable"] = str(info.value)
    key.write()
    assert_clean(key, {**messages, **_logs(caplog, capsys)})


def test_rejected_key_against_the_fake_server_is_one_clean_line(
    key: Key,
    fake_ee,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys,  # noqa: ANN001
) -> None:
    """The token exchange is answered 'invalid_grant' (a revoked key): one line naming the account, no secrets."""
    import google.auth.exceptions
    from google.oauth2 import service_account

    def rejected(self, request):  # noqa: ANN001, ANN202
        assertion = self._make_authorization_grant_assertion()  # signed with the private key, never sent
        raise google.auth.exceptions.RefreshError(
            f"invalid_grant: Invalid JWT Signature. assertion={assertion}", {"error": "invalid_grant"}
        )

    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(service_account.Credentials, "refresh", rejected)
    key.write(token_uri=f"{fake_ee.url}/token")
    res = CliRunner().invoke(cli, ["covariates", "ee-check", "--ee-project", "p", "--ee-url", fake_ee.url])
    reliability.tried("secrets: rejected key (CLI ee-check)")
    assert res.exit_code == 2, (res.output, res.exception)
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and "rejected or expired" in errors[0]
    assert "assertion=" not in res.output  # the signed JWT is a bearer secret too
    assert_clean(key, {"cli output": res.output, **_logs(caplog, capsys)})


@pytest.fixture
def key_accepted(key: Key, fake_ee, monkeypatch: pytest.MonkeyPatch) -> Key:  # noqa: ANN001
    """The key's token exchange succeeds (offline): the key signs a JWT and gets :data:`ACCESS_TOKEN`."""
    from google.oauth2 import service_account

    def refresh(self, request):  # noqa: ANN001, ANN202
        self._make_authorization_grant_assertion()
        self.token = ACCESS_TOKEN
        self.expiry = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(hours=1)

    monkeypatch.setattr(service_account.Credentials, "refresh", refresh)
    monkeypatch.setattr(ee.deprecation, "_FetchDataCatalogStac", dict)
    key.write(token_uri=f"{fake_ee.url}/token")
    return key


def test_extract_through_the_fake_server_writes_no_secret(
    key_accepted: Key,
    fake_ee,  # noqa: ANN001
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture,
    soil_dir: Path,
) -> None:
    key = key_accepted
    caplog.set_level(logging.DEBUG)
    cache = tmp_path / "cache"
    monkeypatch.setenv("GEESOIL_CACHE_DIR", str(cache))
    samples = tmp_path / "samples.csv"
    wise = pd.read_parquet(soil_dir / "wise.parquet", columns=["profile_id", "lon", "lat"])
    pts = wise.drop_duplicates("profile_id").sample(25, random_state=1)
    pts.assign(oc_gkg=10.0).to_csv(samples, index=False)
    out = tmp_path / "train.parquet"
    args = ["-vv", "covariates", "extract", "--samples", str(samples), "--covariates", "ee:coarse-global-v1"]
    args += ["--ee-project", "geesoil-test-project", "--ee-url", fake_ee.url, "-o", str(out)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, (res.output, res.exception)
    assert len(pd.read_parquet(out)) == 25
    # the fake server saw the access token: it was really used for the requests
    assert any(c.path.endswith("computeFeatures") for c in fake_ee.calls)
    reliability.tried("secrets: extract via the fake Earth Engine server")
    assert_clean(key, {"cli output": res.output, **_logs(caplog, capsys)})
    assert_clean(key, files_under(out, cache, tmp_path / "samples.csv"), identity_ok=False)


# ---- map and refresh runs with the key in the environment ---------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import geopandas as gpd

    root = tmp_path_factory.mktemp("secrets")
    pack = make_pack(root / "pack")
    model = make_model(pack, root / "rf.geesoil", make_training(pack, n=120))
    aoi = root / "aoi.geojson"
    gpd.GeoDataFrame(geometry=[box(149.52, -30.28, 149.98, -30.005)], crs="EPSG:4326").to_file(aoi)
    return {"pack": pack, "model": model, "aoi": aoi}


def test_map_and_refresh_runs_write_no_secret(
    key: Key,
    world: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("GEESOIL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GEESOIL_EE_PROJECT", "geesoil-secret-project-" + key.key_id[:6])
    out = tmp_path / "map"
    args = ["-vv", "map", "--aoi", str(world["aoi"]), "--model", str(world["model"]), "--covariates"]
    args += [str(world["pack"]), "--tile-size", "16", "--std", "-o", str(out)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, (res.output, res.exception)
    assert (out / "run.json").is_file()

    job = tmp_path / "job.toml"
    job.write_text(
        f"""
name = "secrets"
[aoi]
path = "{world["aoi"]}"
[model]
file = "{world["model"]}"
[covariates]
sources = ["{world["pack"]}"]
[grid]
scale = 2000.0
tile_size = 16
[output]
dir = "refresh-out"
""",
        encoding="utf-8",
    )
    res2 = CliRunner().invoke(cli, ["-vv", "refresh", str(job), "--workdir", str(tmp_path)])
    assert res2.exit_code == 0, (res2.output, res2.exception)
    assert (tmp_path / "refresh-out" / "manifest.json").is_file()
    reliability.tried("secrets: map and refresh runs with a key in the environment", 2)
    texts = {"map output": res.output, "refresh output": res2.output, **_logs(caplog, capsys)}
    assert_clean(key, texts)
    artefacts = files_under(out, tmp_path / "refresh-out", tmp_path / "cache")
    assert any(name.endswith("run.json") for name in artefacts)
    assert_clean(key, artefacts, identity_ok=False)
    for name, text in artefacts.items():  # nor the path of the key file, nor the project secret
        assert str(key.path) not in text and key.key_id[:6] not in text, name
