"""Initialise earthengine-api without a network, from the algorithm list bundled with the package.

Earth Engine objects (``ee.Image``...) can only be built once the client knows the server's algorithms, which
``ee.Initialize`` normally downloads. :func:`initialize_offline` loads them from ``ee/tests/algorithms.json``
(shipped inside earthengine-api, the file ``ee/apitestcase.py`` uses), so expression graphs can be built and
serialised offline. Nothing can be *computed* after it: there is no server.
"""

from __future__ import annotations

import json
import threading
from functools import cache
from pathlib import Path
from typing import Any

import ee
from ee import _cloud_api_utils

from geesoil.errors import EarthEngineError

#: Project recorded in an offline session; it never reaches a server.
OFFLINE_PROJECT = "geesoil-offline"

_lock = threading.Lock()


def ee_package_file(relpath: str) -> Path:
    """A data file inside the installed earthengine-api package (e.g. ``tests/algorithms.json``)."""
    return Path(ee.__file__).resolve().parent / relpath


@cache
def bundled_algorithms() -> dict[str, Any]:
    """The algorithm signatures bundled with earthengine-api, in the form ``ee.data.getAlgorithms`` returns."""
    path = ee_package_file("tests/algorithms.json")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise EarthEngineError(
            f"cannot read the algorithm list bundled with earthengine-api ({path}: {exc}); "
            "reinstall it with `pip install --force-reinstall earthengine-api`"
        ) from None
    return _cloud_api_utils.convert_algorithms(raw)


def initialize_offline(project: str = OFFLINE_PROJECT) -> None:
    """Make ``ee`` usable for building and serialising expressions, with no credentials and no network.

    Resets any earlier initialisation. The patches needed during ``ee.Initialize`` (no Cloud API resource, the
    bundled algorithm list, no fetch of the deprecated-assets list from storage.googleapis.com) are undone before
    returning, so a later real :func:`geesoil.ee.auth.initialize` works normally.
    """
    with _lock:
        saved = (
            ee.data._install_cloud_api_resource,
            ee.data.getAlgorithms,
            ee.deprecation._FetchDataCatalogStac,
        )
        try:
            ee.Reset()
            ee.data._install_cloud_api_resource = lambda: None
            ee.data.getAlgorithms = bundled_algorithms
            ee.deprecation._FetchDataCatalogStac = dict
            ee.Initialize(credentials=None, project=project)
        finally:
            (
                ee.data._install_cloud_api_resource,
                ee.data.getAlgorithms,
                ee.deprecation._FetchDataCatalogStac,
            ) = saved


def ensure_initialized() -> None:
    """Initialise offline unless ``ee`` is already initialised (offline or for real)."""
    if not ee.data.is_initialized():
        initialize_offline()
