"""Soil models: the GSoilCPM network, fine-tuning strategies, baselines and the one model-file format."""

from __future__ import annotations
