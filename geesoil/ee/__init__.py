"""Everything that talks to Google Earth Engine: catalog expressions, authentication, limits and the EE source."""

from __future__ import annotations
