"""Shared fixtures: the real data folder (required on CI) and small generated inputs."""

from __future__ import annotations

import os
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
