"""Earth Engine login: find credentials and a project, then ``ee.Initialize`` without hanging or prompting.

Credentials, first found wins:

1. ``GOOGLE_APPLICATION_CREDENTIALS``: a service-account JSON key (or an ``authorized_user`` file);
2. the earthengine CLI's saved login (``earthengine authenticate`` writes ``~/.config/earthengine/credentials``);
3. gcloud's application-default login (``gcloud auth application-default login``).

Project: ``--ee-project`` > ``$GEESOIL_EE_PROJECT`` > the project saved with the login (``earthengine set_project``)
> the service account's own project. ``--ee-url`` (or ``$GEESOIL_EE_URL``) picks the endpoint, e.g. :data:`HIGH_VOLUME_URL` for many small
parallel requests. Nothing here prompts or opens a browser; every failure is a one-line :class:`EarthEngineError`
that names the command or variable that fixes it. Before a real endpoint is contacted its host is resolved and
connected to under a timeout, so a machine without network fails in seconds instead of hanging in DNS.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import ee
from ee import oauth

from geesoil.errors import EarthEngineError

log = logging.getLogger(__name__)

PROJECT_ENV = "GEESOIL_EE_PROJECT"
URL_ENV = "GEESOIL_EE_URL"
CREDENTIALS_ENV = "GOOGLE_APPLICATION_CREDENTIALS"
DEFAULT_URL = "https://earthengine.googleapis.com"
#: The high-volume endpoint: for many small, parallel, cacheable requests (sampling, tiles).
HIGH_VOLUME_URL = "https://earthengine-highvolume.googleapis.com"
#: Seconds allowed to resolve and connect to the endpoint before giving up (no network → fail fast).
CONNECT_TIMEOUT_S = 10.0
#: Per-request deadline handed to earthengine-api (``ee.data.setDeadline``), seconds.
REQUEST_DEADLINE_S = 300.0

#: Fields a service-account key must carry as non-empty strings.
_SA_KEYS = ("client_email", "private_key", "token_uri")

_FIX_LOGIN = (
    "run `earthengine authenticate` (or set GOOGLE_APPLICATION_CREDENTIALS to a service-account JSON key)"
)
_FIX_LOGIN_CI = (
    "set GOOGLE_APPLICATION_CREDENTIALS to a service-account JSON key (non-interactive run: no browser login)"
)


@dataclass(frozen=True)
class Login:
    """Credentials found on this machine, where they came from, and the project saved with them (if any)."""

    credentials: Any
    source: str
    project: str | None = None
    service_account: bool = False


def is_interactive(environ: Mapping[str, str] | None = None) -> bool:
    """False on CI (``CI=true``) or without a terminal on stdin: then only non-interactive fixes are suggested."""
    environ = os.environ if environ is None else environ
    if environ.get("CI", "").lower() in ("true", "1"):
        return False
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):
        return False


def _fix_login(environ: Mapping[str, str]) -> str:
    return _FIX_LOGIN if is_interactive(environ) else _FIX_LOGIN_CI


def _from_key_file(path_text: str, environ: Mapping[str, str]) -> Login:
    from google.oauth2 import credentials as user_credentials
    from google.oauth2 import service_account

    path = Path(path_text).expanduser()
    where = f"{CREDENTIALS_ENV}={path_text}"
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EarthEngineError(
            f"{where}: file not found; point it at your service-account JSON key"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EarthEngineError(f"{where}: cannot read it ({exc}); point it at a readable JSON key") from None
    except json.JSONDecodeError as exc:
        raise EarthEngineError(
            f"{where}: not valid JSON (line {exc.lineno}); download the service account's JSON key again"
        ) from None
    kind = info.get("type") if isinstance(info, dict) else None
    try:
        if kind == "service_account":
            missing = [k for k in _SA_KEYS if not isinstance(info.get(k), str) or not info[k].strip()]
            if missing:  # google-auth accepts nulls here and fails only at the first token refresh
                raise ValueError(f"no {', '.join(missing)}")
            creds = service_account.Credentials.from_service_account_info(info, scopes=oauth.SCOPES)
            return Login(creds, f"service account {info.get('client_email')}", info.get("project_id"), True)
        if kind == "authorized_user":
            creds = user_credentials.Credentials.from_authorized_user_info(info, scopes=oauth.SCOPES)
            return Login(creds, f"authorized-user file {path}", info.get("quota_project_id"))
    except (ValueError, KeyError) as exc:
        raise EarthEngineError(
            f"{where}: malformed {kind} key ({exc}); download the service account's JSON key again"
        ) from None
    raise EarthEngineError(
        f'{where}: unsupported credentials type {kind!r}; use a service-account JSON key ("type": "service_account")'
    )


def _from_earthengine_cli(environ: Mapping[str, str]) -> Login | None:
    from google.oauth2 import credentials as user_credentials

    path = Path(oauth.get_credentials_path())
    if not path.is_file():
        return None
    try:
        args = oauth.get_credentials_arguments()
    except (OSError, ValueError) as exc:
        raise EarthEngineError(
            f"{path}: unreadable earthengine login ({exc}); {_fix_login(environ)}"
        ) from None
    if not args.get("refresh_token"):
        raise EarthEngineError(f"{path}: saved earthengine login has no refresh token; {_fix_login(environ)}")
    project = args.pop("quota_project_id", None)
    # Built here rather than via ee.data.get_persistent_credentials, which refreshes the token over the network.
    return Login(user_credentials.Credentials(None, **args), f"earthengine login {path}", project)


def _from_gcloud_adc(environ: Mapping[str, str]) -> Login | None:
    import google.auth
    import google.auth.exceptions

    config = environ.get("CLOUDSDK_CONFIG") or str(Path("~/.config/gcloud").expanduser())
    path = Path(config) / "application_default_credentials.json"
    if not path.is_file():
        return None
    try:
        creds, project = google.auth.load_credentials_from_file(str(path), scopes=oauth.SCOPES)
    except google.auth.exceptions.GoogleAuthError as exc:
        raise EarthEngineError(f"{path}: unusable gcloud login ({exc}); {_fix_login(environ)}") from None
    return Login(
        creds, f"gcloud application-default login {path}", getattr(creds, "quota_project_id", None) or project
    )


def find_login(environ: Mapping[str, str] | None = None) -> Login:
    """The first credentials found (see module docstring); :class:`EarthEngineError` with the fix when none."""
    environ = os.environ if environ is None else environ
    key = environ.get(CREDENTIALS_ENV)
    if key:
        return _from_key_file(key, environ)
    for finder in (_from_earthengine_cli, _from_gcloud_adc):
        login = finder(environ)
        if login is not None:
            return login
    raise EarthEngineError(f"no Earth Engine credentials found: {_fix_login(environ)}")


def resolve_project(
    project: str | None, login: Login | None, environ: Mapping[str, str] | None = None
) -> str | None:
    """``project`` > ``$GEESOIL_EE_PROJECT`` > the project saved with the login (None when there is none)."""
    environ = os.environ if environ is None else environ
    return project or environ.get(PROJECT_ENV) or (login.project if login else None) or None


def check_reachable(url: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Resolve and TCP-connect to ``url``'s host within ``timeout_s``; :class:`EarthEngineError` otherwise.

    DNS lookups ignore socket timeouts, so the lookup runs in a daemon thread that is abandoned on timeout.
    """
    parsed = urlparse(url)
    host = parsed.hostname
    if not parsed.scheme or not host:
        raise EarthEngineError(f"--ee-url {url!r} is not a URL; use e.g. {HIGH_VOLUME_URL}")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    result: dict[str, Any] = {}

    def probe() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            family, kind, proto, _, addr = infos[0]
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(timeout_s)
                sock.connect(addr)
            result["ok"] = True
        except OSError as exc:
            result["error"] = exc

    thread = threading.Thread(target=probe, name="geesoil-ee-probe", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if result.get("ok"):
        return
    why = result.get("error") or f"no answer within {timeout_s:g} s"
    raise EarthEngineError(
        f"cannot reach Earth Engine at {url} ({why}); check the network or proxy, or --ee-url / GEESOIL_EE_URL"
    )


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def initialize(
    project: str | None = None,
    url: str | None = None,
    *,
    login: Login | None = None,
    environ: Mapping[str, str] | None = None,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    request_deadline_s: float = REQUEST_DEADLINE_S,
) -> Login:
    """Initialise earthengine-api for ``project`` at ``url`` (default endpoint when None) and return the login used.

    ``login`` overrides credential discovery (tests pass fake credentials). earthengine-api's own retries are
    turned off (``ee.data.setMaxRetries(0)``): geesoil retries with its own bounded backoff
    (:mod:`geesoil.ee.limits`), so failures are reported instead of retried silently for minutes.
    """
    environ = os.environ if environ is None else environ
    login = login or find_login(environ)
    project = resolve_project(project, login, environ)
    if not project and not login.service_account:
        raise EarthEngineError(
            f"no Earth Engine project given (credentials: {login.source}); pass --ee-project PROJECT or set "
            f"{PROJECT_ENV} (a Cloud project registered for Earth Engine)"
        )
    base = (url or environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
    check_reachable(base, connect_timeout_s)
    token_uri = getattr(login.credentials, "token_uri", None) or getattr(
        login.credentials, "_token_uri", None
    )
    if token_uri and not getattr(login.credentials, "valid", True):
        # The first request refreshes the access token at Google's OAuth endpoint: make sure it answers, too.
        check_reachable(token_uri, connect_timeout_s)
    ee.Reset()
    try:
        ee.Initialize(credentials=login.credentials, project=project, url=base)
        ee.data.setDeadline(
            int(request_deadline_s * 1000)
        )  # rebuilds the API client with the request timeout
    except ee.EEException as exc:
        raise EarthEngineError(
            f"Earth Engine refused to start ({_one_line(exc)}); {_fix_login(environ)}"
        ) from None
    except Exception as exc:  # transport errors (refresh, socket, malformed discovery) are not EEExceptions
        import google.auth.exceptions

        if isinstance(exc, google.auth.exceptions.RefreshError):
            raise EarthEngineError(
                f"Earth Engine credentials ({login.source}) were rejected or expired; {_fix_login(environ)}"
            ) from None
        if (
            isinstance(exc, OSError | ValueError | google.auth.exceptions.GoogleAuthError)
            or "httplib2" in type(exc).__module__
        ):
            raise EarthEngineError(f"cannot start Earth Engine at {base}: {_one_line(exc)}") from None
        raise
    ee.data.setMaxRetries(0)
    log.info("Earth Engine initialised: project %s, endpoint %s, %s", project, base, login.source)
    return login
