"""Ablations of the transfer recipe: each fine-tuning ingredient on/off, location encoding on/off, window 0 vs 1.

Usage: ``python benchmarks/ablation.py [--quick] [--regions edgeroi,malawi,niger] [--sizes 50,100] [--folds 3]
[--repeats 2] [--members 3] [--arms reference,no-location,...] [--window-step-m 5000]``.

Every arm is one configuration of "pretrain a SoilNet globally, transfer it to a region"; the table :data:`ARMS`
lists them, each with the ingredient it toggles and the arm it is compared with (its ``versus``; the
``reference`` arm for most). The reference: plain fine-tuning (``finetuned``) of an N-member ensemble pretrained
with Fourier location features, single-pixel covariates and a ``log1p`` target, intervals re-calibrated
conformally on the regional samples.

Pretraining: every pretrained variant an arm needs (reference, no location encoding, identity target, 3×3 window)
is trained here, on the same samples as the shipped model (``pretrain_models.pretraining_samples``: WISE + ISIS +
AfSP 0-30 cm with the experiment regions and 50 km around them held out), the same coarse pack, the same seed and
the same budget (members, epochs, batch, 100 km validation blocks), so two arms differ only in what they toggle.

Evaluation: per region, spatial-block k-fold CV (block size of ``pretrain_models.REGIONS``); from each training
fold ``repeats`` random draws of each size; every arm is fitted on the same draw and scored on the same test fold
(by its median, as :func:`geesoil.evaluate.evaluate` scores), so differences are paired. Reported per arm × region × size: MAE, CCC, PICP90 (coverage of the 90 % interval),
mean interval width, and against the arm's ``versus``: ΔMAE % (relative, mean ± standard error over paired draws),
ΔCCC and ΔPICP90 (absolute differences: relative CCC changes explode where CCC ≈ 0).
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    add_output_args,
    machine_info,
    make_result,
    out_dir_of,
    quiet_geesoil,
    save_result,
    shared_data,
    timer,
)

from geesoil.covariates.window import Context  # noqa: E402
from geesoil.model.base import median_prediction  # noqa: E402

log = logging.getLogger("ablation")

NAME = "ablation"
#: validation blocks of the pretraining ensembles, as for the shipped models
VALIDATION_BLOCK_KM = 100.0
#: regional covariate packs (``$GEESOIL_SHARED_DATA/<path>``) per region; regions without one skip the arms needing it
REGIONAL_PACKS = {"edgeroi": "regional/edgeroi"}
#: the 3×3 window's pixel spacing: the finest layers of the coarse pack are 0.05° (≈ 5.5 km) and 30″
WINDOW_STEP_M = 5000.0


# ------------------------------------------------------------------------------------------------ the arms
@dataclass(frozen=True)
class Pretraining:
    """One pretrained variant: what differs from the reference pretraining."""

    location: str | None = "fourier"
    target: str = "log1p"
    window: int = 0


PRETRAININGS: dict[str, Pretraining] = {
    "reference": Pretraining(),
    "no-location": Pretraining(location=None),
    "identity-target": Pretraining(target="identity"),
    "window-1": Pretraining(window=1),
}


@dataclass(frozen=True)
class Arm:
    """One configuration of the transfer recipe.

    ``strategy``: a :func:`geesoil.model.finetune.make_strategy` name, or ``"pretrained"`` (the pretrained ensemble
    as it is: no fit at all). ``calibration``: ``"regional"`` (the strategy's conformal re-calibration on the regional
    samples) or ``"pretrained"`` (the pretrained model's global calibration kept). ``reuse``: an arm whose fitted
    model this one shares (only the calibration differs), so its points are identical by construction.
    """

    name: str
    ingredient: str
    toggle: str  # "off": the ingredient removed from the reference; "on": added; "variant": swapped
    description: str
    versus: str | None = "reference"
    pretraining: str = "reference"
    strategy: str = "finetuned"
    params: Mapping[str, Any] = field(default_factory=dict)
    members: int | None = None  # None: every pretrained member
    calibration: str = "regional"
    regional: bool = False  # uses the region's regional-pack covariates
    branch_init: str = "zero"  # regional-branch: how the new branch's head connections start
    reuse: str | None = None


ARMS: tuple[Arm, ...] = (
    Arm(
        "reference",
        "–",
        "–",
        "plain fine-tuning of the N-member ensemble (Fourier location, 1×1 pixel, log1p target), regional "
        "cross-conformal intervals",
        versus=None,
    ),
    Arm(
        "no-pretraining",
        "pretrained initialisation",
        "off",
        "the same architecture and covariates trained on the regional draw only (scratch)",
        strategy="scratch",
    ),
    Arm(
        "no-finetuning",
        "fine-tuning the weights",
        "off",
        "the pretrained ensemble unchanged; intervals re-calibrated on the regional draw (global)",
        strategy="global",
    ),
    Arm(
        "no-recalibration",
        "regional conformal re-calibration",
        "off",
        "the reference's fine-tuned networks with the pretrained model's global interval calibration",
        calibration="pretrained",
        reuse="reference",
    ),
    Arm(
        "pretrained-as-is",
        "regional re-calibration, without fine-tuning",
        "off",
        "the pretrained ensemble with its global calibration, compared with no-finetuning",
        versus="no-finetuning",
        strategy="pretrained",
        calibration="pretrained",
    ),
    Arm(
        "one-member",
        "ensemble (N members)",
        "off",
        "fine-tuning the first pretrained member only (one network, one validation fold)",
        members=1,
    ),
    Arm(
        "identity-target",
        "log1p target",
        "off",
        "pretrained and fine-tuned on SOC in g/kg instead of log1p(SOC)",
        pretraining="identity-target",
    ),
    Arm(
        "no-location",
        "location encoding",
        "off",
        "pretrained and fine-tuned without the Fourier lon/lat features (no location group)",
        pretraining="no-location",
    ),
    Arm(
        "window-1",
        "3×3 pixel window",
        "on",
        "pretrained and fine-tuned with a 3×3 window of every covariate (window=1) instead of one pixel",
        pretraining="window-1",
    ),
    Arm(
        "recentred-start",
        "output re-centred on the region before fine-tuning",
        "on",
        "the output bias shifted by the mean regional residual, then fine-tuned (finetuned, recentre=True)",
        params={"recentre": True},
    ),
    Arm(
        "gp-residuals",
        "GP residual correction",
        "on",
        "fine-tuned + a Gaussian process on the out-of-fold residuals (finetuned-gp)",
        strategy="finetuned-gp",
    ),
    Arm(
        "discriminative-lr",
        "discriminative learning rates",
        "on",
        "covariate branches at 0.1× the head's learning rate (discriminative)",
        strategy="discriminative",
    ),
    Arm(
        "coral",
        "CORAL feature alignment",
        "on",
        "fine-tuning with a CORAL penalty towards the pretraining features (coral)",
        strategy="coral",
    ),
    Arm(
        "regional-branch",
        "regional pack covariates in a new branch",
        "on",
        "a zero-connected branch for the regional pack's covariates, then fine-tuned (regional-branch)",
        strategy="regional-branch",
        regional=True,
    ),
    Arm(
        "regional-branch-random-init",
        "zero-initialised regional branch",
        "off",
        "regional-branch whose new head connections start random (default init) instead of at zero",
        versus="regional-branch",
        strategy="regional-branch",
        regional=True,
        branch_init="random",
    ),
)
ARM_NAMES = tuple(a.name for a in ARMS)


@dataclass(frozen=True)
class Budget:
    """Everything that trades accuracy of the estimate for run time."""

    regions: tuple[str, ...] = ("edgeroi", "malawi", "niger")
    sizes: tuple[int, ...] = (50, 100)
    folds: int = 3
    repeats: int = 2
    members: int = 3
    pretrain_epochs: int = 40
    pretrain_batch: int = 1024
    epochs: int | None = None  # at most this many epochs for every trained arm; None: each strategy's default
    window_step_m: float = WINDOW_STEP_M
    seed: int = 0


QUICK = Budget(regions=("edgeroi",), sizes=(50,), folds=2, repeats=1, members=2, pretrain_epochs=5, epochs=20)
#: a fuller run: three draws per fold and size
FULL = Budget(regions=("edgeroi", "malawi", "niger"), repeats=3)


# ------------------------------------------------------------------------------------------------ data
@dataclass
class Table:
    """Samples (``lon``/``lat``), their model inputs ``X`` and target ``y`` (g/kg), row-aligned."""

    samples: pd.DataFrame
    X: pd.DataFrame
    y: np.ndarray


@dataclass
class GlobalData:
    """The pretraining table per window size, and the covariates it has."""

    covariates: tuple[Any, ...]
    tables: dict[int, Table]


@dataclass
class RegionData:
    """A region's samples per window size (same rows, same order) and its region-only covariates."""

    name: str
    title: str
    block_km: float
    tables: dict[int, Table]
    regional: tuple[Any, ...] = ()


def _table(
    samples: pd.DataFrame, source: Any, names: Sequence[str] | None, context: Any, where: str
) -> Table:
    from geesoil.evaluate import covariate_table

    kw = {"context": context} if context is not None else {}
    s, X, y = covariate_table(samples, source, names, where=where, **kw)
    return Table(s.reset_index(drop=True), X.reset_index(drop=True), np.asarray(y, float))


def _align(tables: dict[int, Table]) -> dict[int, Table]:
    """Restrict every table to the samples all of them kept (covariate_table may drop different rows)."""
    if len(tables) < 2:
        return tables

    def keys(t: Table) -> pd.Index:
        return pd.Index(
            list(zip(t.samples["lon"].round(7), t.samples["lat"].round(7), t.y.round(6), strict=True))
        )

    common = None
    for t in tables.values():
        k = keys(t)
        common = k if common is None else common.intersection(k)
    out = {}
    for w, t in tables.items():
        k = keys(t)
        keep = np.flatnonzero(k.isin(common) & ~k.duplicated())
        out[w] = Table(
            t.samples.iloc[keep].reset_index(drop=True), t.X.iloc[keep].reset_index(drop=True), t.y[keep]
        )
    return out


def load_global(windows: Sequence[int], step_m: float) -> GlobalData:
    """The pretraining samples of ``pretrain_models`` with the coarse pack's covariates, per window size."""
    from pretrain_models import pack_sources, pretraining_samples

    from geesoil.covariates.open import open_sources

    samples, _ = pretraining_samples(shared_data() / "soil")
    source = open_sources(pack_sources("coarse"))
    base = _table(samples, source, None, None, "global samples (coarse)")
    covs = tuple(s for s in source.specs if base.X[s.name].notna().any())
    names = [c.name for c in covs]
    tables = {0: base}
    for w in windows:
        if w:
            ctx = Context.over(w, step_m, covs)
            tables[w] = _table(samples, source, names, ctx, "global samples (window)")
    return GlobalData(covs, _align(tables))


def load_region(name: str, windows: Sequence[int], step_m: float, covariates: Sequence[Any]) -> RegionData:
    """A region of ``pretrain_models.REGIONS`` with the coarse pack (plus its regional pack, if any)."""
    from pretrain_models import REGIONS

    from geesoil.covariates.open import open_sources

    region = REGIONS[name]
    samples = region.select(shared_data() / "soil")
    words = [str(shared_data() / "covariates")]
    if name in REGIONAL_PACKS and (shared_data() / REGIONAL_PACKS[name]).is_dir():
        words.append(str(shared_data() / REGIONAL_PACKS[name]))
    source = open_sources(words)
    known = {c.name for c in covariates}
    tables = {0: _table(samples, source, None, None, name)}
    regional = tuple(s for s in source.specs if s.name not in known and tables[0].X[s.name].notna().any())
    for w in windows:
        if w:
            ctx = Context.over(w, step_m, covariates)
            tables[w] = _table(samples, source, None, ctx, f"{name} (window)")
    return RegionData(name, region.title, region.block_km, _align(tables), regional)


# ------------------------------------------------------------------------------------------------ models
def pretrain(
    variant: Pretraining, data: GlobalData, budget: Budget, *, window_step_m: float | None = None
) -> tuple[Any, dict[str, Any]]:
    """A SoilNet pretrained on ``data`` as ``variant`` says; every other setting as for the shipped model."""
    from geesoil.cv import block_ids
    from geesoil.model.network import SoilNet

    table = data.tables[variant.window]
    kw: dict[str, Any] = {}
    if variant.window:
        kw = {"window": variant.window, "window_step_m": window_step_m or budget.window_step_m}
    model = SoilNet(
        data.covariates,
        location=variant.location,
        target=variant.target,
        n_members=budget.members,
        max_epochs=budget.pretrain_epochs,
        batch_size=budget.pretrain_batch,
        random_state=budget.seed,
        device="cpu",
        progress=False,
        **kw,
    )
    groups = block_ids(table.X["lon"], table.X["lat"], VALIDATION_BLOCK_KM)
    with timer() as t:
        model.fit(table.X, table.y, groups=groups)
    info = {
        **asdict(variant),
        "n": len(table.y),
        "members": budget.members,
        "epochs_per_member": [m.get("epochs") for m in model.members_],
        "validation_mae": model.metrics_["validation"]["mae"],
        "pretrain_s": t.s,
    }
    return model, info


def _random_init_branch_class() -> type:
    """``regional-branch`` whose new branch is connected to the head with default (random) weights, not zeros."""
    import torch
    from torch import nn

    from geesoil.model.finetune import RegionalBranch

    class RandomInitRegionalBranch(RegionalBranch):
        def _member_net(self, m: int) -> nn.Module:
            net = super()._member_net(m)
            head = net.head[0]
            width = net.branch_width
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.random_state + m)
                fresh = nn.Linear(width, head.out_features)  # PyTorch's default init for that many inputs
            with torch.no_grad():
                head.weight[:, -width:] = fresh.weight
            return net

    return RandomInitRegionalBranch


def make_model(arm: Arm, pretrained: Any, regional: Sequence[Any], budget: Budget) -> Any:
    """An unfitted model for ``arm`` built on ``pretrained`` (``strategy="pretrained"``: the pretrained model)."""
    from geesoil.model.auto import fewer_members
    from geesoil.model.finetune import make_strategy

    pre = fewer_members(pretrained, arm.members) if arm.members else pretrained
    if arm.strategy == "pretrained":
        return pre
    params: dict[str, Any] = {"device": "cpu", "progress": False, **arm.params}
    if budget.epochs is not None and arm.strategy != "global":
        params.setdefault("max_epochs", budget.epochs)
    regional = tuple(regional) if arm.regional else ()
    if arm.strategy == "regional-branch" and arm.branch_init == "random":
        cls = _random_init_branch_class()
        return cls(pre, regional_covariates=regional, random_state=budget.seed, **params)
    return make_strategy(arm.strategy, pre, regional_covariates=regional, random_state=budget.seed, **params)


def model_config(model: Any, pretrained: Any | None = None) -> dict[str, Any]:
    """What a fitted model actually is: kind, members, input groups, location, target, window, calibration."""
    enc = model.encoder_
    groups = [g.name for g in model.arch_["layout"]]
    out = {
        "kind": getattr(model, "kind", type(model).__name__),
        "class": type(model).__name__,
        "members": len(model.nets_),
        "groups": groups,
        "location": enc.location,
        "target": model.target_["transform"],
        "window": _window_of(model),
        "inputs": int(sum(g.n_cont + len(g.cat) for g in model.arch_["layout"])),
        "covariates": len(model.covariates),
    }
    if pretrained is not None:
        out["calibration"] = "pretrained" if model.calibration_ is pretrained.calibration_ else "regional"
        out["weights_changed"] = any(
            not _same_weights(a, b) for a, b in zip(model.nets_, pretrained.nets_, strict=False)
        )
    return out


def _window_of(model: Any) -> int:
    """The model's window (pixels each side): its encoder's, its own, or its pretrained model's; 0 if none."""
    for obj in (model.encoder_, model, getattr(model, "pretrained", None)):
        w = getattr(obj, "window", None)
        if w is not None and not callable(w):
            ctx_w = getattr(w, "window", w)
            return int(ctx_w or 0)
    return 0


def _same_weights(a: Any, b: Any) -> bool:
    import torch

    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _with_pretrained_calibration(model: Any, pretrained: Any) -> Any:
    """A shallow copy of ``model`` predicting with ``pretrained``'s interval calibration (points unchanged)."""
    out = copy.copy(model)
    out.calibration_ = pretrained.calibration_
    return out


# ------------------------------------------------------------------------------------------------ evaluation
def availability(arm: Arm, region: RegionData) -> str | None:
    """Why ``arm`` cannot run in ``region`` (None: it can)."""
    if arm.regional and not region.regional:
        return f"{region.name} has no regional covariate pack"
    return None


def run_region(
    region: RegionData,
    arms: Sequence[Arm],
    pretrained: Mapping[str, Any],
    budget: Budget,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Every arm on the same spatial-block folds and draws of ``region``: ``(records, configs)``."""
    from geesoil import cv, metrics
    from geesoil.errors import GeesoilError

    base = region.tables[0]
    lon, lat = base.samples["lon"].to_numpy(float), base.samples["lat"].to_numpy(float)
    outer = cv.kfold(lon, lat, k=budget.folds, block_km=region.block_km, seed=budget.seed)
    records: list[dict[str, Any]] = []
    configs: dict[str, dict[str, Any]] = {}
    for fold in outer:
        for size, rep, idx in cv.learning_curve_draws(
            fold.train, list(budget.sizes), repeats=budget.repeats, seed=budget.seed + fold.index
        ):
            fitted: dict[str, Any] = {}
            for arm in arms:
                variant = PRETRAININGS[arm.pretraining]
                table = region.tables[variant.window]
                pre = pretrained[arm.pretraining]
                Xtr, ytr = table.X.iloc[idx], table.y[idx]
                Xte, yte = table.X.iloc[fold.test], table.y[fold.test]
                with timer() as t:
                    try:
                        if arm.reuse:
                            if arm.reuse not in fitted:
                                raise _Skip(f"{arm.reuse} did not fit on this draw")
                            model = fitted[arm.reuse]
                        else:
                            model = make_model(arm, pre, region.regional, budget)
                            if arm.strategy != "pretrained":
                                model.fit(Xtr, ytr)
                    except (GeesoilError, _Skip) as exc:
                        log.warning("%s, %s, n=%s, fold %d: %s", region.name, arm.name, size, fold.index, exc)
                        records.append(_record(arm, region, size, fold, rep, idx, skipped=str(exc)))
                        continue
                fitted[arm.name] = model
                if arm.calibration == "pretrained":
                    model = _with_pretrained_calibration(model, pre)
                if arm.name not in configs:
                    configs[arm.name] = model_config(model, pre)
                pred = median_prediction(model, Xte)
                lo, hi = model.predict_interval(Xte, alpha=0.1)
                rec = _record(arm, region, size, fold, rep, idx, fit_s=0.0 if arm.reuse else t.s)
                rec.update(metrics.scores(yte, pred, lo, hi))
                records.append(rec)
    return records, configs


class _Skip(Exception):
    """An arm that cannot be scored on this draw (the arm it reuses did not fit)."""


def _record(
    arm: Arm, region: RegionData, size: int | None, fold: Any, rep: int, idx: np.ndarray, **kw: Any
) -> dict[str, Any]:
    return {
        "arm": arm.name,
        "region": region.name,
        "size": int(size) if size is not None else len(idx),
        "fold": int(fold.index),
        "draw": int(rep),
        "n_test": int(len(fold.test)),
        **kw,
    }


# ------------------------------------------------------------------------------------------------ analysis
METRICS = ("mae", "ccc", "picp90", "width90")


def _mean_se(x: np.ndarray) -> tuple[float, float]:
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan, math.nan
    se = float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else math.nan
    return float(x.mean()), se


def _cell(arm: pd.DataFrame, other: pd.DataFrame | None) -> dict[str, Any]:
    """Means of one arm's draws and, paired by draw, its differences from ``other``."""
    out: dict[str, Any] = {"draws": int(len(arm))}
    for m in METRICS:
        out[m] = _mean_se(arm[m].to_numpy(float))[0]
    if other is None:
        return out
    keys = ["region", "size", "fold", "draw"]
    both = arm.merge(other, on=keys, suffixes=("", "_vs"))
    out["paired"] = int(len(both))
    out["mae_versus"] = _mean_se(both["mae_vs"].to_numpy(float))[0]  # the comparator on the same draws
    out["mae_change_pct"], out["mae_change_pct_se"] = _mean_se(
        100 * (both["mae"] - both["mae_vs"]) / both["mae_vs"]
    )
    out["ccc_change"], out["ccc_change_se"] = _mean_se(both["ccc"] - both["ccc_vs"])
    out["picp90_change"], _ = _mean_se(both["picp90"] - both["picp90_vs"])
    return out


def summarise(records: Sequence[dict[str, Any]], arms: Sequence[Arm]) -> dict[str, dict[str, Any]]:
    """Per arm: region × size cells and the pooled figures, each against the arm's ``versus``."""
    df = pd.DataFrame.from_records([r for r in records if "skipped" not in r])
    out: dict[str, dict[str, Any]] = {}
    for arm in arms:
        mine = df[df["arm"] == arm.name] if not df.empty else df
        if mine.empty:
            continue
        other_all = df[df["arm"] == arm.versus] if arm.versus else None
        if other_all is not None and other_all.empty:
            other_all = None
        cells: dict[str, dict[str, Any]] = {}
        for (region, size), g in mine.groupby(["region", "size"], sort=True):
            o = None
            if other_all is not None:
                o = other_all[(other_all["region"] == region) & (other_all["size"] == size)]
            cells.setdefault(str(region), {})[f"n{size}"] = _cell(g, o)
        out[arm.name] = {"cells": cells, "pooled": _cell(mine, other_all)}
    return out


def resolved(pooled: Mapping[str, Any], key: str = "mae_change_pct") -> bool:
    """Whether a paired mean difference is more than two standard errors from 0."""
    m, se = pooled.get(key), pooled.get(f"{key}_se")
    return m is not None and se is not None and math.isfinite(m) and math.isfinite(se) and abs(m) > 2 * se


# ------------------------------------------------------------------------------------------------ driver
def run_ablation(
    global_data: GlobalData,
    regions: Sequence[RegionData],
    budget: Budget,
    arms: Sequence[Arm] = ARMS,
    *,
    machine: Mapping[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The ablation on prepared data: pretrain the variants the arms need, run every region, summarise."""
    say = progress or (lambda msg: None)
    t_all = time.perf_counter()
    arms = list(arms)
    runnable = {a.name: [r for r in regions if availability(a, r) is None] for a in arms}
    variants = sorted({a.pretraining for a in arms if runnable[a.name]}, key=list(PRETRAININGS).index)
    pretrained, pre_info = {}, {}
    for v in variants:
        say(f"pretraining {v}")
        pretrained[v], pre_info[v] = pretrain(PRETRAININGS[v], global_data, budget)
    records: list[dict[str, Any]] = []
    configs: dict[str, dict[str, dict[str, Any]]] = {}
    region_info: dict[str, Any] = {}
    with warnings.catch_warnings(), quiet_geesoil():
        warnings.simplefilter("ignore")  # GP kernels at their bounds on noise-like residuals
        for region in regions:
            todo = [a for a in arms if region in runnable[a.name]]
            say(f"{region.name}: {len(todo)} arms")
            with timer() as t:
                recs, cfg = run_region(region, todo, pretrained, budget)
            records += recs
            for name, c in cfg.items():
                configs.setdefault(name, {})[region.name] = c
            region_info[region.name] = {
                "title": region.title,
                "n": len(region.tables[0].y),
                "block_km": region.block_km,
                "regional_covariates": [c.name for c in region.regional],
                "seconds": t.s,  # informational (no _s suffix): per-region time moves with early stopping
            }
    summary = summarise(records, arms)
    fit_s = pd.DataFrame.from_records([r for r in records if "fit_s" in r])
    figures_arms: dict[str, Any] = {}
    for a in arms:
        skipped = {r.name: availability(a, r) for r in regions if r not in runnable[a.name]}
        entry: dict[str, Any] = {
            "ingredient": a.ingredient,
            "toggle": a.toggle,
            "versus": a.versus,
            "description": a.description,
            "pretraining": a.pretraining,
            "strategy": a.strategy,
            "status": "ran" if a.name in summary else "skipped",
        }
        if skipped:
            entry["skipped"] = skipped
        failed = [r for r in records if r["arm"] == a.name and "skipped" in r]
        if failed:
            entry["failed_fits"] = len(failed)
            entry["failure"] = failed[0]["skipped"]
        if a.name in configs:
            entry["config"] = configs[a.name]
        if a.name in summary:
            entry.update(summary[a.name])
            entry["fit_seconds_total"] = float(fit_s.loc[fit_s["arm"] == a.name, "fit_s"].sum())
        figures_arms[a.name] = entry
    figures = {
        "arms": figures_arms,
        "pretraining": pre_info,
        "regions": region_info,
        "wall_s": time.perf_counter() - t_all,  # run() adds loading the tables
    }
    params = {
        **asdict(budget),
        "arms": [a.name for a in arms],
        "pretraining_variants": {k: asdict(v) for k, v in PRETRAININGS.items() if k in variants},
        "validation_block_km": VALIDATION_BLOCK_KM,
    }
    notes = [
        "mae_change_pct: 100·(MAE_arm − MAE_versus)/MAE_versus per paired draw, mean ± standard error; ccc_change and "
        "picp90_change are absolute differences",
        "a difference within two standard errors is not resolved by this budget",
    ]
    directions = {"wall_s": "lower"}
    result = make_result(NAME, params, figures, machine=machine, directions=directions, notes=notes)
    result["records"] = [
        {k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()} for r in records
    ]
    return result


def run(budget: Budget, arm_names: Sequence[str] | None = None, *, threads: int = 1) -> dict[str, Any]:
    """Load the real data and run the ablation (the command line's work)."""
    import torch

    torch.set_num_threads(threads)
    machine = machine_info("cpu")
    arms = [a for a in ARMS if arm_names is None or a.name in arm_names]
    windows = sorted({PRETRAININGS[a.pretraining].window for a in arms})

    def say(msg: str) -> None:
        print(f"[ablation] {msg}", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    with quiet_geesoil(), timer() as t_load:
        say("loading the pretraining and regional tables")
        global_data = load_global(windows, budget.window_step_m)
        regions = [
            load_region(r, windows, budget.window_step_m, global_data.covariates) for r in budget.regions
        ]
    result = run_ablation(global_data, regions, budget, arms, machine=machine, progress=say)
    result["figures"]["load_s"] = t_load.s
    result["figures"]["wall_s"] = time.perf_counter() - t0
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick", action="store_true", help="a smoke run: Edgeroi, n=50, 2 folds, 1 draw, 2 members"
    )
    ap.add_argument("--full", action="store_true", help="3 draws per fold and size")
    ap.add_argument("--regions", help="comma list of edgeroi, malawi, niger")
    ap.add_argument("--sizes", help="comma list of training sizes, e.g. 50,100")
    ap.add_argument("--folds", type=int)
    ap.add_argument("--repeats", type=int, help="random draws per size and fold")
    ap.add_argument("--members", type=int, help="ensemble members of every pretrained variant")
    ap.add_argument("--pretrain-epochs", type=int)
    ap.add_argument("--epochs", type=int, help="fine-tuning epochs (at most; early stopping)")
    ap.add_argument("--window-step-m", type=float, help="pixel spacing of the 3×3 window (m)")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--arms", help=f"comma list of {', '.join(ARM_NAMES)} (default: all)")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest for these small nets)"
    )
    add_output_args(ap)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    budget = QUICK if args.quick else FULL if args.full else Budget()
    over: dict[str, Any] = {
        "regions": tuple(args.regions.split(",")) if args.regions else None,
        "sizes": tuple(int(s) for s in args.sizes.split(",")) if args.sizes else None,
        "folds": args.folds,
        "repeats": args.repeats,
        "members": args.members,
        "pretrain_epochs": args.pretrain_epochs,
        "epochs": args.epochs,
        "window_step_m": args.window_step_m,
        "seed": args.seed,
    }
    budget = replace(budget, **{k: v for k, v in over.items() if v is not None})
    arms = None
    if args.arms:
        arms = [a.strip() for a in args.arms.split(",") if a.strip()]
        unknown = sorted(set(arms) - set(ARM_NAMES))
        if unknown:
            ap.error(f"unknown arm(s) {', '.join(unknown)}; choose from {', '.join(ARM_NAMES)}")
        needed = {a.versus for a in ARMS if a.name in arms and a.versus} | {
            a.reuse for a in ARMS if a.name in arms and a.reuse
        }
        arms = sorted(set(arms) | needed, key=ARM_NAMES.index)
    result = run(budget, arms, threads=args.threads)
    save_result(result, out_dir_of(args))


if __name__ == "__main__":
    main()
