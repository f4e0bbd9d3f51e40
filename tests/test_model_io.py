"""The model-file container: atomic round trip, clear errors for foreign or damaged files, no pickles."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from geesoil.errors import ModelError
from geesoil.model import io


@io.register("test-constant")
class ConstantModel:
    kind = "test-constant"

    def __init__(self, value: float = 0.0) -> None:
        self.value = value

    @property
    def covariates(self):
        return ()

    def to_state(self):
        return {"value": self.value}, {"weights.bin": np.float64(self.value).tobytes()}

    @classmethod
    def from_state(cls, meta, blobs):
        stored = float(np.frombuffer(blobs["weights.bin"], dtype=np.float64)[0])
        if stored != meta["value"]:
            raise ValueError("blob and metadata disagree")
        return cls(meta["value"])


def test_round_trip_and_metadata(tmp_path):
    path = io.save_model(ConstantModel(12.5), tmp_path / "m.geesoil")
    doc = io.read_metadata(path)
    assert doc["kind"] == "test-constant" and doc["model"] == {"value": 12.5}
    assert io.load_model(path).value == 12.5
    assert not list(tmp_path.glob(".tmp-*")), "temp file left behind"


@pytest.mark.parametrize(
    "content, message",
    [
        (b"not a zip", "not a geesoil model file"),
        (None, "not found"),
    ],
)
def test_foreign_files_are_refused(tmp_path, content, message):
    path = tmp_path / "x.geesoil"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelError, match=message):
        io.load_model(path)


def _write(path, doc, blobs=None):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("model.json", json.dumps(doc))
        for k, v in (blobs or {}).items():
            zf.writestr(f"blobs/{k}", v)


def test_unknown_kind_newer_format_and_damage_are_clear_errors(tmp_path):
    base = {"format": io.FORMAT, "format_version": io.FORMAT_VERSION, "model": {"value": 1.0}}
    _write(tmp_path / "a", {**base, "kind": "nope"})
    with pytest.raises(ModelError, match="unknown model kind 'nope'"):
        io.load_model(tmp_path / "a")
    _write(tmp_path / "b", {**base, "kind": "test-constant", "format_version": io.FORMAT_VERSION + 1})
    with pytest.raises(ModelError, match="newer geesoil"):
        io.load_model(tmp_path / "b")
    _write(tmp_path / "c", {**base, "kind": "test-constant"}, {"weights.bin": np.float64(2.0).tobytes()})
    with pytest.raises(ModelError, match="damaged test-constant model"):
        io.load_model(tmp_path / "c")
