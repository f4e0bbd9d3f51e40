"""Earth Engine login: credential and project discovery, one-line errors, no hang and no prompt."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import ee
import ee_fake_server
import pytest
from ee_fake_server import FakeEarthEngine, fake_login

from geesoil.ee import auth
from geesoil.ee.auth import EarthEngineError, find_login, initialize, resolve_project

REPO = Path(__file__).resolve().parents[1]
fake_ee = ee_fake_server.fake_ee  # the fixture


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty home: no earthengine or gcloud login."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("CLOUDSDK_CONFIG", raising=False)
    return tmp_path


def service_account_key(path: Path, project: str = "sa-project") -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": project,
                "private_key_id": "abc",
                "private_key": pem,
                "client_email": f"runner@{project}.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    )
    return path


def test_no_credentials_names_the_fix(home):
    with pytest.raises(EarthEngineError) as err:
        find_login(environ={})
    msg = str(err.value)
    assert "\n" not in msg and "credentials" in msg
    assert "earthengine authenticate" in msg or "GOOGLE_APPLICATION_CREDENTIALS" in msg


def test_ci_suggests_a_service_account_not_a_browser_login(home):
    with pytest.raises(EarthEngineError) as err:
        find_login(environ={"CI": "true"})
    msg = str(err.value)
    assert (
        "GOOGLE_APPLICATION_CREDENTIALS" in msg and "earthengine authenticate" not in msg and "\n" not in msg
    )


def test_non_interactive_run_fails_fast_without_prompting(home):
    """A real process, stdin closed, CI=true: one line on stderr and a quick exit (no DNS wait, no prompt)."""
    code = textwrap.dedent(
        """
        import sys
        from geesoil.ee.auth import initialize
        from geesoil.errors import EarthEngineError
        try:
            initialize(project="p")
        except EarthEngineError as exc:
            print(exc, file=sys.stderr)
            sys.exit(2)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "GOOGLE_APPLICATION_CREDENTIALS"}
    env.update(HOME=str(home), CI="true")
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", code],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )
    assert time.monotonic() - t0 < 30
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "GOOGLE_APPLICATION_CREDENTIALS" in lines[0]


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "file not found"),
        ("{not json", "not valid JSON"),
        ('{"type": "external_account"}', "unsupported credentials type"),
        (
            '{"type": "service_account", "client_email": "x@y", "private_key": "garbage", "token_uri": "t"}',
            "malformed",
        ),
    ],
)
def test_broken_key_file_is_a_one_line_error_naming_the_variable(home, content, message):
    key = home / "key.json"
    if content is not None:
        key.write_text(content)
    with pytest.raises(EarthEngineError, match=message) as err:
        find_login(environ={"GOOGLE_APPLICATION_CREDENTIALS": str(key)})
    assert f"GOOGLE_APPLICATION_CREDENTIALS={key}" in str(err.value) and "\n" not in str(err.value)


def test_service_account_key_gives_its_project(home):
    key = service_account_key(home / "sa.json")
    login = find_login(environ={"GOOGLE_APPLICATION_CREDENTIALS": str(key)})
    assert login.service_account and login.project == "sa-project"
    assert "runner@sa-project" in login.source


def test_saved_earthengine_login_is_found_without_network(home):
    creds = home / ".config" / "earthengine" / "credentials"
    creds.parent.mkdir(parents=True)
    creds.write_text(json.dumps({"refresh_token": "1//tok", "project": "saved-project"}))
    t0 = time.monotonic()
    login = find_login(environ={})
    assert time.monotonic() - t0 < 2  # built from the file, not refreshed over the network
    assert login.project == "saved-project" and login.credentials.refresh_token == "1//tok"


def test_saved_login_without_refresh_token_says_authenticate_again(home):
    creds = home / ".config" / "earthengine" / "credentials"
    creds.parent.mkdir(parents=True)
    creds.write_text(json.dumps({"project": "p"}))
    with pytest.raises(EarthEngineError, match="no refresh token"):
        find_login(environ={})


def test_project_precedence_flag_then_env_then_saved():
    login = fake_login("saved")
    assert resolve_project("flag", login, {"GEESOIL_EE_PROJECT": "env"}) == "flag"
    assert resolve_project(None, login, {"GEESOIL_EE_PROJECT": "env"}) == "env"
    assert resolve_project(None, login, {}) == "saved"
    assert resolve_project(None, None, {}) is None


def test_missing_project_names_the_option_and_variable():
    login = auth.Login(fake_login().credentials, "fake", None)
    with pytest.raises(EarthEngineError, match="--ee-project") as err:
        initialize(login=login, environ={})
    assert "GEESOIL_EE_PROJECT" in str(err.value)


def test_unreachable_endpoint_fails_within_the_timeout():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(EarthEngineError, match="cannot reach Earth Engine"):
        initialize(
            project="p", url=f"http://127.0.0.1:{port}", login=fake_login(), environ={}, connect_timeout_s=1
        )
    assert time.monotonic() - t0 < 5


def test_unresolvable_host_does_not_hang():
    t0 = time.monotonic()
    with pytest.raises(EarthEngineError, match="cannot reach"):
        auth.check_reachable("https://earthengine.invalid", timeout_s=1)
    assert time.monotonic() - t0 < 3


def test_bad_url_is_a_user_error():
    with pytest.raises(EarthEngineError, match="not a URL"):
        auth.check_reachable("earthengine-highvolume", timeout_s=1)


def test_initialize_against_the_fake_server(fake_ee):
    assert ee.data.is_initialized()
    assert ee.Number(1).add(2).getInfo() == 3
    assert fake_ee.calls_to("value:compute")[-1].path == "/v1alpha/projects/test/value:compute"


def test_server_refusal_at_start_is_one_line(monkeypatch):
    server = FakeEarthEngine().start()
    monkeypatch.setattr(ee.deprecation, "_FetchDataCatalogStac", dict)
    server.inject(
        status=403,
        message="Permission denied: project test is not registered for Earth Engine.\nSee docs.",
        endpoint="algorithms",
    )
    try:
        with pytest.raises(EarthEngineError) as err:
            initialize(
                project="test",
                url=server.url,
                login=fake_login(),
                environ={"CI": "true"},
                connect_timeout_s=2,
            )
        msg = str(err.value)
        assert "\n" not in msg and "not registered" in msg and "GOOGLE_APPLICATION_CREDENTIALS" in msg
    finally:
        ee.Reset()
        server.stop()


def test_service_account_without_network_fails_fast_at_the_token_endpoint(home, monkeypatch):
    """The key is fine and the endpoint answers, but Google's OAuth endpoint is unreachable: no DNS hang."""
    server = FakeEarthEngine().start()
    monkeypatch.setattr(ee.deprecation, "_FetchDataCatalogStac", dict)
    key = service_account_key(home / "sa.json")
    t0 = time.monotonic()
    try:
        with pytest.raises(EarthEngineError, match="oauth2.googleapis.com"):
            initialize(
                url=server.url, environ={"GOOGLE_APPLICATION_CREDENTIALS": str(key)}, connect_timeout_s=1
            )
    finally:
        ee.Reset()
        server.stop()
    assert time.monotonic() - t0 < 5


def test_ee_check_command_reports_project_and_endpoint(monkeypatch):
    from click.testing import CliRunner

    from cli.ee_commands import ee_check

    server = FakeEarthEngine().start()
    monkeypatch.setattr(ee.deprecation, "_FetchDataCatalogStac", dict)
    monkeypatch.setattr(auth, "find_login", lambda environ=None: fake_login(project=None))
    try:
        result = CliRunner().invoke(
            ee_check, ["--ee-url", server.url], env={"GEESOIL_EE_PROJECT": "from-env"}
        )
        assert result.exit_code == 0, result.output
        assert "project from-env" in result.output and server.url in result.output
        assert server.calls_to("/projects/from-env/algorithms")
    finally:
        ee.Reset()
        server.stop()


def test_ee_check_command_without_login_raises_the_one_line_error(home):
    from click.testing import CliRunner

    from cli.ee_commands import ee_check

    result = CliRunner().invoke(ee_check, ["--ee-project", "p"], env={"GOOGLE_APPLICATION_CREDENTIALS": ""})
    assert isinstance(result.exception, EarthEngineError)
    assert "credentials" in str(result.exception) and "\n" not in str(result.exception)
