"""One model file for every strategy: a zip holding ``model.json`` (metadata) and named binary blobs.

Nothing in a model file is unpickled: torch tensors travel as safetensors-compatible bytes loaded with
``torch.load(weights_only=True)`` or safetensors, scikit-learn models as ``skops`` bytes loaded against an explicit
trusted-type list, and metadata as JSON.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from geesoil import __version__
from geesoil.errors import GeesoilError, ModelError
from geesoil.model.base import SoilModel

FORMAT = "geesoil-model"
FORMAT_VERSION = 1

_REGISTRY: dict[str, Callable[[dict[str, Any], dict[str, bytes]], SoilModel]] = {}


def register(kind: str) -> Callable[[type], type]:
    """Class decorator: make ``load_model`` able to rebuild models whose metadata says ``kind``."""

    def deco(cls: type) -> type:
        _REGISTRY[kind] = cls.from_state
        return cls

    return deco


def save_model(model: SoilModel, path: str | Path) -> Path:
    """Write ``model`` to ``path`` atomically (a temp file renamed into place)."""
    path = Path(path)
    meta, blobs = model.to_state()
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "geesoil_version": __version__,
        "kind": model.kind,
    }
    doc["model"] = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".geesoil", dir=path.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("model.json", json.dumps(doc, indent=1, sort_keys=True, default=_jsonable))
            for name, data in blobs.items():
                zf.writestr(f"blobs/{name}", data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``model.json`` document of a model file, without loading any weights."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            doc = json.loads(zf.read("model.json"))
    except FileNotFoundError as exc:
        raise ModelError(f"{path}: model file not found") from exc
    except (
        zipfile.BadZipFile,
        KeyError,
        ValueError,
        OSError,
        zlib.error,
    ) as exc:  # ValueError: bad JSON/UTF-8
        raise ModelError(f"{path}: not a geesoil model file ({_one_line(exc)})") from exc
    if not isinstance(doc, dict):
        raise ModelError(f"{path}: not a geesoil model file (model.json holds a {type(doc).__name__})")
    if doc.get("format") != FORMAT:
        raise ModelError(f"{path}: not a geesoil model file (format {doc.get('format')!r})")
    version = doc.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ModelError(f"{path}: damaged model file (format_version {version!r} is not an integer)")
    if version > FORMAT_VERSION:
        raise ModelError(
            f"{path}: written by a newer geesoil (format {doc['format_version']}); upgrade geesoil"
        )
    return doc


def load_model(path: str | Path) -> SoilModel:
    """Rebuild the model stored at ``path``; unknown kinds and damaged files raise :class:`ModelError`."""
    import geesoil.model.registry  # noqa: F401  (imports every model module so their kinds are registered)

    path = Path(path)
    doc = read_metadata(path)
    kind = doc.get("kind")
    if not isinstance(kind, str) or kind not in _REGISTRY:
        raise ModelError(f"{path}: unknown model kind {kind!r}; known: {', '.join(sorted(_REGISTRY))}")
    try:
        with zipfile.ZipFile(path) as zf:
            blobs = {n[len("blobs/") :]: zf.read(n) for n in zf.namelist() if n.startswith("blobs/")}
    except (zipfile.BadZipFile, OSError, zlib.error) as exc:
        raise ModelError(f"{path}: damaged model file ({_one_line(exc)})") from exc
    if not isinstance(doc.get("model"), dict):
        raise ModelError(f"{path}: damaged {kind} model (no 'model' object in model.json)")
    model = _rebuild(path, kind, doc["model"], blobs)
    _smoke_test(model, path, kind)
    return model


def _smoke_test(model: SoilModel, path: Path, kind: str) -> None:
    """Predict one row of missing covariates: a tampered file fails here, not on the first tile of a map."""
    import numpy as np
    import pandas as pd

    if not (hasattr(model, "predict") and hasattr(model, "predict_interval")):
        return  # a partial model (tests register such kinds): nothing to try
    try:
        X = pd.DataFrame({s.name: [np.nan] for s in model.covariates})
        X["lon"], X["lat"] = [0.0], [0.0]
        pred = np.asarray(model.predict(X), dtype=float)
        lo, hi = (np.asarray(a, dtype=float) for a in model.predict_interval(X))
    except GeesoilError:  # a model that refuses such a row on purpose is not damaged
        return
    except Exception as exc:  # whatever a tampered tensor shape or calibration value trips on
        raise ModelError(f"{path}: damaged {kind} model (it cannot predict: {_one_line(exc)})") from exc
    if pred.shape != (1,) or lo.shape != (1,) or hi.shape != (1,):
        raise ModelError(f"{path}: damaged {kind} model (one row gave predictions of shape {pred.shape})")


def nest_blobs(prefix: str, blobs: dict[str, bytes]) -> dict[str, bytes]:
    """A component's blobs under ``prefix/``, for a model file holding several models (``auto``, ``stacked-qrf``)."""
    return {f"{prefix}/{k}": v for k, v in blobs.items()}


def unnest_blobs(prefix: str, blobs: dict[str, bytes]) -> dict[str, bytes]:
    """The blobs :func:`nest_blobs` stored under ``prefix/``, with their own names."""
    head = f"{prefix}/"
    return {k[len(head) :]: v for k, v in blobs.items() if k.startswith(head)}


def rebuild(kind: str, meta: dict[str, Any], blobs: dict[str, bytes], what: str) -> SoilModel:
    """A component model of ``kind`` from its state; :class:`ModelError` naming ``what`` for an unknown kind."""
    import geesoil.model.registry  # noqa: F401  (registers every component kind)

    if not isinstance(kind, str) or kind not in _REGISTRY:
        raise ModelError(f"{what} has unknown kind {kind!r}")
    return _REGISTRY[kind](meta, blobs)


def _rebuild(path: Path, kind: str, meta: dict[str, Any], blobs: dict[str, bytes]) -> SoilModel:
    try:
        return _REGISTRY[kind](meta, blobs)
    except pickle.UnpicklingError as exc:
        raise ModelError(
            f"{path}: refusing to load {kind} weights holding pickled objects other than tensors "
            "(the model file was tampered with or is not a geesoil model)"
        ) from exc
    except ModelError as exc:  # raised by a loader that does not know the file's name
        raise ModelError(exc.args[0] if str(path) in str(exc) else f"{path}: {exc}") from exc
    # a tampered model.json or blob surfaces as whatever the loader trips on
    except (
        KeyError,
        ValueError,
        TypeError,
        RuntimeError,
        AttributeError,
        IndexError,
        ArithmeticError,
    ) as exc:
        raise ModelError(f"{path}: damaged {kind} model ({_one_line(exc)})") from exc


def _one_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def _jsonable(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
