"""geesoil: map soil organic carbon for any region by transferring a globally pretrained model."""

from __future__ import annotations

__version__ = "0.1.0"
