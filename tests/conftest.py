"""Shared fixtures: the real data folder (required on CI) and small generated inputs."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import pytest
from hypothesis import settings
from reliability import pytest_runtest_logreport, pytest_sessionfinish  # noqa: F401  (hardening report)

# CI must not be flaky: property tests replay the same examples on every run there (locally they explore).
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")

SHARED_DATA = Path(
    os.environ.get("GEESOIL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


def _require(path: Path) -> Path:
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"shared data missing on CI: {path}")
        pytest.skip(f"shared data not available: {path}")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (fails, not skips, when CI=true and it is missing)."""
    return _require(SHARED_DATA)


@pytest.fixture(scope="session")
def soil_dir(shared_data: Path) -> Path:
    return _require(shared_data / "soil")


@pytest.fixture(scope="session")
def coarse_pack(shared_data: Path) -> Path:
    return _require(shared_data / "covariates")


@pytest.fixture(scope="session")
def edgeroi_pack(shared_data: Path) -> Path:
    return _require(shared_data / "regional" / "edgeroi")


@pytest.fixture(autouse=True)
def _restore_geesoil_log_level():
    """Entry points run in-process (benchmark mains, CLI commands) may quiet the ``geesoil`` logger; later tests
    read warnings through caplog, so every test starts from the same logging state."""
    import logging

    logger = logging.getLogger("geesoil")
    level = logger.level
    yield
    logger.setLevel(level)


# ---- no test touches the network -------------------------------------------------------------------------------
class NetworkBlocked(OSError):
    """A test tried to reach a non-loopback host. An ``OSError`` so code under test sees "no network", exactly as
    on an offline machine (tests of unreachable hosts keep working); uncaught, it fails the test with this message."""


class NetworkLookupBlocked(NetworkBlocked, socket.gaierror):
    """A DNS lookup of a non-local name (a ``gaierror``, as when no resolver answers)."""


class NetworkConnectBlocked(NetworkBlocked, ConnectionRefusedError):
    """A ``connect`` to a non-loopback address."""


_NO_NETWORK_HINT = (
    "tests must not touch the network; serve it locally (tests/ee_fake_server.py, tests/gcs_fake_server.py)"
)


def _host_name(host: object) -> str | None:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    return None if host is None else str(host).strip("[]").split("%")[0].rstrip(".").lower()


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip


def _network_verdict(host: object) -> str:
    """``"local"`` (loopback, unspecified, ``localhost``, this machine's name), ``"invalid"`` (RFC 6761 ``.invalid``
    names: they never resolve, so tests use them for unresolvable hosts) or ``"remote"``."""
    name = _host_name(host)
    if name is None or name in ("", "localhost", "localhost.localdomain", socket.gethostname().lower()):
        return "local"
    if name.endswith(".localhost"):
        return "local"
    if name == "invalid" or name.endswith(".invalid"):
        return "invalid"
    ip = _ip(name)
    if ip is None:
        return "remote"
    return "local" if ip.is_loopback or ip.is_unspecified else "remote"


@pytest.fixture(autouse=True)
def _no_network(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """Every ``connect`` must go to loopback or an AF_UNIX socket, and only local names may be looked up
    (except in ``ee_live`` tests, which talk to the real Earth Engine and are skipped unless opted in).

    Patches ``socket.socket.connect``/``connect_ex``, ``socket.create_connection``, ``socket.getaddrinfo`` and
    ``socket.gethostbyname`` in this process (subprocesses a test starts are not covered)."""
    if (
        request.node.get_closest_marker("ee_live") is not None
    ):  # real Earth Engine, opted in by GEESOIL_EE_LIVE=1
        yield
        return
    test = request.node.nodeid

    def unresolvable(host: object) -> NetworkLookupBlocked:
        return NetworkLookupBlocked(socket.EAI_NONAME, f"{_host_name(host)}: Name or service not known")

    def check_address(family: int, address: object) -> None:
        if family == getattr(socket, "AF_UNIX", None) or isinstance(address, str | bytes):
            return
        host = address[0] if isinstance(address, tuple) and address else address
        verdict = _network_verdict(host)
        if verdict == "invalid":
            raise unresolvable(host)
        if verdict == "remote":
            port = address[1] if isinstance(address, tuple) and len(address) > 1 else "?"
            raise NetworkConnectBlocked(f"{test} tried to connect to {host}:{port}: {_NO_NETWORK_HINT}")

    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo, real_gethostbyname = socket.getaddrinfo, socket.gethostbyname
    real_create_connection = socket.create_connection

    def connect(self, address):
        check_address(self.family, address)
        return real_connect(self, address)

    def connect_ex(self, address):
        check_address(self.family, address)
        return real_connect_ex(self, address)

    def lookup_allowed(host: object) -> None:
        verdict = _network_verdict(host)
        if verdict == "invalid":
            raise unresolvable(host)
        if verdict == "remote" and _ip(_host_name(host) or "") is None:  # numeric addresses need no lookup
            raise NetworkLookupBlocked(
                socket.EAI_NONAME, f"{test} tried to look up {_host_name(host)!r}: {_NO_NETWORK_HINT}"
            )

    def getaddrinfo(host, *args, **kwargs):
        lookup_allowed(host)
        return real_getaddrinfo(host, *args, **kwargs)

    def gethostbyname(host):
        lookup_allowed(host)
        return real_gethostbyname(host)

    def create_connection(address, *args, **kwargs):
        check_address(socket.AF_INET, address)
        return real_create_connection(address, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "gethostbyname", gethostbyname)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    yield
