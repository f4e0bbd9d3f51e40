"""Imports every model module so that ``geesoil.model.io.load_model`` knows all kinds."""

from __future__ import annotations

import importlib

for _name in (
    "geesoil.model.network",
    "geesoil.model.finetune",
    "geesoil.baselines",
    "geesoil.model.stack",
    "geesoil.model.auto",
):
    try:
        importlib.import_module(_name)
    except ModuleNotFoundError as _exc:  # a strategy module not present in this build
        if _exc.name != _name:
            raise
