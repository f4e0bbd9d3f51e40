"""Covariate table → network inputs: z-scores with missing flags, class indices, multi-scale location features.

An encoder is fitted on training data only and then frozen (fine-tuning keeps the global statistics so pretrained
weights stay meaningful). Its output is two matrices: ``cont`` (float32, one column per z-scored covariate, per
missing indicator and per location feature) and ``cat`` (int64, one column per categorical covariate holding a
vocabulary index, 0 = unknown/missing). ``layout`` says which columns feed which group branch.

With a pixel window (``window`` > 0, see :mod:`geesoil.covariates.window`) every continuous covariate also brings
its k×k − 1 neighbour columns, z-scored with the centre's statistics; a missing neighbour takes the centre's value
(so a window at a coast or a raster edge degrades to the single pixel). A group branch's linear layer over the
centre and its neighbours is then a k×k convolution over the window. Categorical covariates use the centre only.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from geesoil.covariates.spec import GROUPS, CovariateSpec
from geesoil.covariates.window import Context, column
from geesoil.errors import GeesoilError, ModelError

LOCATION_GROUP = "location"
#: vocabulary index of unseen or missing classes
UNKNOWN = 0
#: z-scores are clipped so a covariate far outside the training range cannot blow up the activations
Z_CLIP = 10.0
#: random Fourier features of the unit-sphere position, one block per scale (cycles per radian on the sphere:
#: 1 ≈ continental, 64 ≈ a few hundred km)
FOURIER_SCALES = (1.0, 4.0, 16.0, 64.0)
FOURIER_PER_SCALE = 8
LOCATION_MODES = ("fourier", None)


def spec_to_dict(spec: CovariateSpec) -> dict[str, Any]:
    """JSON-ready form of a spec (class codes become strings, as JSON needs)."""
    d = dataclasses.asdict(spec)
    if d["classes"] is not None:
        d["classes"] = {str(k): v for k, v in d["classes"].items()}
    return d


def spec_from_dict(d: dict[str, Any]) -> CovariateSpec:
    d = dict(d)
    if d.get("classes") is not None:
        d["classes"] = {int(k): v for k, v in d["classes"].items()}
    known = {f.name for f in dataclasses.fields(CovariateSpec)}
    return CovariateSpec(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class GroupLayout:
    """Which input columns feed one group branch."""

    name: str
    cont: tuple[int, int]  # [start, stop) in the continuous matrix
    cat: tuple[int, ...] = ()  # columns of the categorical matrix
    vocab: tuple[int, ...] = ()  # vocabulary size (unknown slot included) per categorical column

    @property
    def n_cont(self) -> int:
        return self.cont[1] - self.cont[0]

    def shifted(self, cont_offset: int, cat_offset: int) -> GroupLayout:
        return GroupLayout(
            self.name,
            (self.cont[0] + cont_offset, self.cont[1] + cont_offset),
            tuple(c + cat_offset for c in self.cat),
            self.vocab,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "cont": list(self.cont), "cat": list(self.cat), "vocab": list(self.vocab)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GroupLayout:
        return cls(d["name"], tuple(d["cont"]), tuple(d["cat"]), tuple(d["vocab"]))


@dataclass
class Encoded:
    """Network inputs for N rows."""

    cont: np.ndarray  # (N, D) float32
    cat: np.ndarray  # (N, K) int64

    def __len__(self) -> int:
        return self.cont.shape[0]

    def take(self, idx: np.ndarray) -> Encoded:
        return Encoded(self.cont[idx], self.cat[idx])

    def hstack(self, other: Encoded) -> Encoded:
        return Encoded(np.hstack([self.cont, other.cont]), np.hstack([self.cat, other.cat]))


def _group_order(name: str) -> tuple[int, str]:
    return (GROUPS.index(name) if name in GROUPS else len(GROUPS), name)


def location_features(lon: np.ndarray, lat: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """Unit-sphere position (x, y, z) plus sin/cos of its projections on random frequency vectors ``freqs`` (3, F)."""
    lam, phi = np.radians(lon), np.radians(lat)
    xyz = np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], axis=1)
    proj = xyz @ freqs
    return np.hstack([xyz, np.sin(proj), np.cos(proj)])


class FeatureEncoder:
    """Fits normalisation statistics and vocabularies on training data; transforms tables into :class:`Encoded`.

    ``group`` (optional) puts every covariate into one named group, e.g. a new ``"regional"`` branch.
    """

    def __init__(
        self,
        covariates: Sequence[CovariateSpec],
        *,
        location: str | None = "fourier",
        random_state: int = 0,
        group: str | None = None,
        window: int = 0,
        step_m: float | None = None,
    ) -> None:
        if location not in LOCATION_MODES:
            raise ModelError(f"location={location!r} not supported; use one of {LOCATION_MODES}")
        names = [s.name for s in covariates]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ModelError(f"covariate names given twice: {', '.join(dup)}")
        bad = [n for n in names if n in ("lon", "lat")]
        if bad:
            raise ModelError("'lon'/'lat' are not covariates; use location='fourier' to encode position")
        self.covariates = tuple(covariates)
        self.location = location
        self.random_state = random_state
        self.group = group
        self.window = window
        self.step_m = step_m
        try:
            Context(window, step_m if step_m is not None else math.nan)
        except GeesoilError as exc:
            raise ModelError(str(exc)) from None

    @property
    def context(self) -> Context | None:
        """The pixel window the inputs need (``None`` for single-pixel inputs)."""
        if not self.window:
            return None
        return Context.over(self.window, float(self.step_m), self.covariates)

    # -- fitting -------------------------------------------------------------------------------------------
    def fit(self, X: pd.DataFrame) -> FeatureEncoder:
        self._check_columns(X)
        self.mean_: dict[str, float] = {}
        self.std_: dict[str, float] = {}
        self.vocab_: dict[str, list[int]] = {}
        for spec in self.covariates:
            v = _as_float(X[spec.name])
            ok = v[np.isfinite(v)]
            if spec.is_categorical:
                self.vocab_[spec.name] = sorted({int(c) for c in ok})
            else:
                mean = float(ok.mean()) if ok.size else 0.0
                std = float(ok.std()) if ok.size > 1 else 1.0
                self.mean_[spec.name] = mean
                self.std_[spec.name] = std if std > 1e-12 else 1.0
        if self.location == "fourier":
            rng = np.random.default_rng(self.random_state)
            blocks = [rng.normal(0.0, s, size=(3, FOURIER_PER_SCALE)) for s in FOURIER_SCALES]
            self.freqs_ = np.hstack(blocks)
        else:
            self.freqs_ = np.zeros((3, 0))
        self.layout_ = self._build_layout()
        return self

    def _groups(self) -> dict[str, list[CovariateSpec]]:
        groups: dict[str, list[CovariateSpec]] = {}
        for spec in self.covariates:
            groups.setdefault(self.group or spec.group, []).append(spec)
        if self.location == "fourier":
            groups.setdefault(LOCATION_GROUP, [])
        return {g: groups[g] for g in sorted(groups, key=_group_order)}

    def _build_layout(self) -> tuple[GroupLayout, ...]:
        layout = []
        col = 0
        cat_col = 0
        k2 = (2 * self.window + 1) ** 2
        for g, specs in self._groups().items():
            n_cont = (k2 + 1) * sum(not s.is_categorical for s in specs)
            if g == LOCATION_GROUP and self.location == "fourier":
                n_cont += 3 + 2 * self.freqs_.shape[1]
            cats = [s for s in specs if s.is_categorical]
            layout.append(
                GroupLayout(
                    g,
                    (col, col + n_cont),
                    tuple(range(cat_col, cat_col + len(cats))),
                    tuple(len(self.vocab_[s.name]) + 1 for s in cats),
                )
            )
            col += n_cont
            cat_col += len(cats)
        return tuple(layout)

    # -- transforming --------------------------------------------------------------------------------------
    @property
    def needs_lonlat(self) -> bool:
        return self.location == "fourier"

    def _check_columns(self, X: pd.DataFrame) -> None:
        need = [s.name for s in self.covariates] + (["lon", "lat"] if self.needs_lonlat else [])
        missing = [n for n in need if n not in X.columns]
        if missing:
            raise ModelError(
                f"input table lacks columns the model needs: {', '.join(missing)}; "
                "sample these covariates (and lon/lat) before fitting or predicting"
            )
        ctx = self.context
        lacking = [c for c in ctx.columns if c not in X.columns] if ctx is not None else []
        if lacking:
            raise ModelError(
                f"the model uses a {ctx.size}×{ctx.size} pixel window ({ctx.step_m:g} m pixels) but the input table "
                f"lacks {len(lacking)} neighbour columns (first: {', '.join(lacking[:3])}); build the table with "
                "geesoil.evaluate.covariate_table(..., context=model.context)"
            )

    def transform(self, X: pd.DataFrame) -> Encoded:
        self._check_columns(X)
        n = len(X)
        conts: list[np.ndarray] = []
        cats: list[np.ndarray] = []
        ctx = self.context
        for g, specs in self._groups().items():
            zs, flags, neighbours = [], [], []
            for spec in specs:
                v = _as_float(X[spec.name])
                if spec.is_categorical:
                    cats.append(_vocab_index(v, self.vocab_[spec.name]))
                    continue
                miss = ~np.isfinite(v)
                mean, std = self.mean_[spec.name], self.std_[spec.name]
                centre = np.where(miss, mean, v)
                zs.append(np.clip((centre - mean) / std, -Z_CLIP, Z_CLIP))
                flags.append(miss.astype(np.float64))
                for dy, dx in ctx.offsets if ctx is not None else ():
                    nv = _as_float(X[column(spec.name, dy, dx)])
                    nv = np.where(np.isfinite(nv), nv, centre)
                    neighbours.append(np.clip((nv - mean) / std, -Z_CLIP, Z_CLIP))
            block = [np.stack(zs + flags + neighbours, axis=1)] if zs else []
            if g == LOCATION_GROUP and self.location == "fourier":
                lon, lat = _as_float(X["lon"]), _as_float(X["lat"])
                bad = ~(np.isfinite(lon) & np.isfinite(lat))
                if bad.any():
                    rows = list(X.index[bad][:5])
                    raise ModelError(
                        f"lon/lat missing in {int(bad.sum())} rows (first: {rows}); drop them first"
                    )
                block.append(location_features(lon, lat, self.freqs_))
            conts.append(np.hstack(block) if block else np.zeros((n, 0)))
        cont = np.hstack(conts).astype(np.float32) if conts else np.zeros((n, 0), np.float32)
        cat = np.stack(cats, axis=1).astype(np.int64) if cats else np.zeros((n, 0), np.int64)
        return Encoded(cont, cat)

    # -- state ---------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "covariates": [spec_to_dict(s) for s in self.covariates],
            "location": self.location,
            "random_state": self.random_state,
            "group": self.group,
            "window": self.window,
            "step_m": self.step_m,
            "mean": self.mean_,
            "std": self.std_,
            "vocab": self.vocab_,
            "freqs": self.freqs_.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureEncoder:
        enc = cls(
            [spec_from_dict(s) for s in d["covariates"]],
            location=d["location"],
            random_state=d["random_state"],
            group=d.get("group"),
            window=int(d.get("window", 0)),
            step_m=d.get("step_m"),
        )
        enc.mean_ = {k: float(v) for k, v in d["mean"].items()}
        enc.std_ = {k: float(v) for k, v in d["std"].items()}
        enc.vocab_ = {k: [int(c) for c in v] for k, v in d["vocab"].items()}
        enc.freqs_ = np.asarray(d["freqs"], dtype=np.float64).reshape(3, -1)
        enc.layout_ = enc._build_layout()
        return enc


def _as_float(col: pd.Series) -> np.ndarray:
    try:
        v = pd.to_numeric(col, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
    except (ValueError, TypeError) as exc:
        raise ModelError(
            f"column {col.name!r} is not numeric ({exc}); categorical covariates need integer codes"
        ) from exc
    return np.where(np.isfinite(v), v, np.nan)


def _vocab_index(v: np.ndarray, vocab: list[int]) -> np.ndarray:
    """Class code → 1-based vocabulary position; NaN, non-integer and unseen codes → :data:`UNKNOWN`."""
    out = np.full(v.shape, UNKNOWN, dtype=np.int64)
    if not vocab:
        return out
    arr = np.asarray(vocab, dtype=np.float64)
    pos = np.searchsorted(arr, np.nan_to_num(v, nan=-np.inf))
    pos = np.clip(pos, 0, len(arr) - 1)
    hit = np.isfinite(v) & (arr[pos] == v)
    out[hit] = pos[hit] + 1
    return out
