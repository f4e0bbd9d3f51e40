"""What a covariate is: the frozen description shared by catalogs, packs, Earth Engine and the model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["continuous", "categorical"]

#: GSoilCPM's covariate groups plus ours; a model builds one branch per group.
GROUPS = ("band", "topo", "climate", "vegetation", "lithology", "landcover", "location", "soil", "other")


@dataclass(frozen=True)
class CovariateSpec:
    """One covariate: its name (the column/band name everywhere), group, kind and how to obtain it.

    ``file``/``band`` are set for covariates stored in a local pack; ``ee`` describes the Earth Engine
    recipe (dataset, band, scale, reducer, derived op...) or is ``None`` where Earth Engine has no equivalent.
    ``classes`` maps integer class codes to names for categorical covariates.
    """

    name: str
    group: str
    kind: Kind = "continuous"
    units: str = ""
    resampling: str = "bilinear"
    classes: dict[int, str] | None = None
    file: str | None = None
    band: int = 1
    ee: dict[str, Any] | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_categorical(self) -> bool:
        return self.kind == "categorical"

    def __hash__(self) -> int:  # dict fields are unhashable; the name identifies a covariate
        return hash((self.name, self.group, self.kind))
