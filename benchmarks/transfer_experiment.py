"""The transfer experiment on real data: learning curves of every strategy in regions held out of pretraining.

Usage: ``python benchmarks/transfer_experiment.py [--quick] [--settings a,b] [--folds K] [--repeats R] ...``;
``--render-only`` rebuilds ``docs/results.md`` from ``benchmarks/results/transfer.json`` without training.

Settings (region × covariates): Edgeroi with the coarse global pack, Edgeroi with the coarse pack plus the Edgeroi
regional pack (region-only covariates: ``regional-branch`` and the forests use them), Malawi and Niger (coarse pack).
The pretrained model is ``assets/models/global-coarse-v1.geesoil`` (see ``benchmarks/pretrain_models.py``, which held
these regions and a 50 km buffer around them out of pretraining). Each setting runs :func:`geesoil.evaluate.evaluate`:
outer spatial-block k-fold CV (block size per region), training-set sizes drawn at random from the training fold
(``repeats`` draws per size), every method fitted on the draw and scored on the test fold only. Hyperparameters are
fixed here in advance; nothing is selected on test folds (``auto`` selects by nested CV inside the training draw).

Budgets on the 2-core development machine (shared, under ``nice``): ``--quick`` takes ~10 min wall for all four
settings as two parallel processes (one torch thread each: ``--settings edgeroi,edgeroi+regional`` and
``--settings niger,malawi``, then ``--merge``), ~20 min as one; ``--quick --repeats 3`` with every strategy ~25 min
as two processes. The default (5 folds, 3 repeats, 3 members, 100 epochs) is for a bigger machine (hours here).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pretrain_models import REGIONS, model_path, shared_data  # noqa: E402

from geesoil.covariates.open import open_sources  # noqa: E402
from geesoil.evaluate import covariate_table, evaluate  # noqa: E402
from geesoil.model.auto import fewer_members  # noqa: E402
from geesoil.model.io import load_model  # noqa: E402

log = logging.getLogger("transfer_experiment")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "transfer.json"
DOC = ROOT / "docs" / "results.md"
#: the paper's average improvement of fine-tuning over regional-only models (Zhang et al. 2025)
PAPER = {"mae_decrease_pct": 10.93, "ccc_increase_pct": 29.04}
BASELINES = ("scratch", "rf", "qrf", "global")
SMALL_SIZES = (25, 50)
#: transfer candidates of ``auto`` here (plus ``regional-branch`` where region-only covariates exist)
AUTO_TRANSFER = ("global", "finetuned", "finetuned-gp", "discriminative", "stacked-qrf")


@dataclass(frozen=True)
class Setting:
    name: str
    region: str
    title: str
    regional_pack: str | None = None


SETTINGS: dict[str, Setting] = {
    "edgeroi": Setting("edgeroi", "edgeroi", "Edgeroi, coarse pack"),
    "edgeroi+regional": Setting(
        "edgeroi+regional", "edgeroi", "Edgeroi, coarse + Edgeroi regional pack", "regional/edgeroi"
    ),
    "malawi": Setting("malawi", "malawi", "Malawi, coarse pack"),
    "niger": Setting("niger", "niger", "Niger (arid), coarse pack"),
}


@dataclass(frozen=True)
class Budget:
    """Everything that trades accuracy of the estimate for run time."""

    folds: int = 5
    repeats: int = 3
    sizes: tuple[int | str, ...] = (25, 50, 100, 200, "all")
    members: int = 3
    epochs: int = 100
    trees: int = 300
    auto_inner_folds: int = 3
    auto_selection_trees: int = 100
    seed: int = 0


QUICK = Budget(folds=3, repeats=1, members=2, epochs=40, trees=100, auto_selection_trees=50)
#: strategies left out in quick mode (the cheapest cut: they are variants of plain fine-tuning)
QUICK_SKIP = ("discriminative", "coral")


def methods_for(regional: bool, quick: bool = False) -> list[str]:
    transfer = ["global", "finetuned", "finetuned-gp", "discriminative", "coral"]
    if regional:
        transfer.append("regional-branch")
    transfer.append("stacked-qrf")
    if quick:
        transfer = [m for m in transfer if m not in QUICK_SKIP]
    return ["auto", *transfer, "scratch", "rf", "qrf"]


def method_params(
    budget: Budget, pretrained: Any, block_km: float, regional: bool, quick: bool = False
) -> dict[str, dict[str, Any]]:
    """Fixed, a-priori hyperparameters per method (the same for every region and size)."""
    ft = {"max_epochs": budget.epochs, "progress": False}
    forest = {"n_estimators": budget.trees}
    strategies = {
        n: dict(ft) for n in ("finetuned", "finetuned-gp", "discriminative", "coral", "regional-branch")
    }
    strategies["global"] = {"progress": False}
    # coral is left out: within 1 % of plain fine-tuning everywhere, at the cost of another network per fold
    auto_candidates = [*AUTO_TRANSFER, *(["regional-branch"] if regional else []), "rf", "qrf"]
    scratch = {
        # the pretrained architecture and ensemble size, trained on the region only (as make_strategy's scratch)
        "hidden": tuple(pretrained.arch_["hidden"]),
        "branch_width": pretrained.arch_["branch_width"],
        "dropout": pretrained.arch_["dropout"],
        "location": pretrained.encoder_.location,
        "n_members": budget.members,
        "batch_size": 32,
        "max_epochs": max(budget.epochs, 100),
        "patience": 20,
        "val_fraction": 0.2,
        "progress": False,
    }
    return {
        **strategies,
        "scratch": scratch,
        "rf": forest,
        "qrf": forest,
        "stacked-qrf": forest,
        "auto": {
            "candidates": auto_candidates,
            "inner_folds": budget.auto_inner_folds,
            "block_km": block_km,
            "selection_members": 1,
            "selection_trees": budget.auto_selection_trees,
            "n_estimators": budget.trees,
            "strategy_params": {k: v for k, v in strategies.items() if k in auto_candidates},
        },
    }


class _SelectionLog(logging.Handler):
    """Collects ``auto``'s selection metadata (logged with each fit) to store next to its test-fold records."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.selections: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        sel = getattr(record, "auto_selection", None)
        if sel is not None:
            self.selections.append(sel)

    def matched(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One entry per ``auto`` record, in the same order (``evaluate`` fits and scores one draw at a time)."""
        autos = [r for r in records if r["method"] == "auto"]
        if len(autos) != len(self.selections):  # an auto fit failed after selection: cannot pair them safely
            log.warning("auto: %d selections for %d records; not stored", len(self.selections), len(autos))
            return []
        keys = (
            "choice",
            "weights",
            "default",
            "oof_mae",
            "scores_mae",
            "inner_folds",
            "fold_kind",
            "intervals",
        )
        return [
            {"size": r["size"], "fold": r["fold"], "mae": r["mae"], **{k: sel.get(k) for k in keys}}
            for r, sel in zip(autos, self.selections, strict=True)
        ]


def run_setting(
    setting: Setting, budget: Budget, pretrained: Any, methods: list[str] | None, quick: bool = False
) -> dict[str, Any]:
    region = REGIONS[setting.region]
    samples = region.select(shared_data() / "soil")
    words = [str(shared_data() / "covariates")]
    if setting.regional_pack:
        words.append(str(shared_data() / setting.regional_pack))
    source = open_sources(words)
    samples, X, y = covariate_table(samples, source, where=setting.name)
    known = {c.name for c in pretrained.covariates}
    regional = [s for s in source.specs if s.name not in known and X[s.name].notna().any()]
    covs = list(pretrained.covariates) + regional
    X = X[[c.name for c in covs] + ["lon", "lat"]]
    methods = methods or methods_for(bool(regional), quick)
    if not regional:
        methods = [m for m in methods if m != "regional-branch"]
    t0 = time.perf_counter()
    choices = _SelectionLog()
    logging.getLogger("geesoil.model.auto").addHandler(choices)
    try:
        res = evaluate(
            samples,
            X,
            y,
            pretrained=pretrained,
            methods=methods,
            folds=budget.folds,
            spatial_block_km=region.block_km,
            sizes=list(budget.sizes),
            repeats=budget.repeats,
            seed=budget.seed,
            covariates=covs,
            method_params=method_params(budget, pretrained, region.block_km, bool(regional), quick),
            progress=sys.stderr.isatty(),
        )
    finally:
        logging.getLogger("geesoil.model.auto").removeHandler(choices)
    res["auto_choices"] = choices.matched(res["records"])
    res["setting"] = {
        **asdict(setting),
        "region_title": region.title,
        "selection": region.description,
        "block_km": region.block_km,
        "n": int(y.size),
        "y_median": float(np.median(y)),
        "y_mean": float(np.mean(y)),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    log.info("%s: %d records in %.0f s", setting.name, len(res["records"]), res["setting"]["seconds"])
    return res


# ------------------------------------------------------------------------------------------------ analysis
def _summary_frame(results: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for name, res in results["settings"].items():
        for r in res["summary"]:
            rows.append({"setting": name, **r, "size": str(r["size"])})
    return pd.DataFrame(rows)


def _size_order(s: str) -> float:
    return math.inf if s == "all" else float(s)


def improvements(df: pd.DataFrame, method: str = "finetuned") -> pd.DataFrame:
    """``method`` vs each baseline per setting × size: MAE decrease % and CCC increase %."""
    rows = []
    for (setting, size), g in df.groupby(["setting", "size"], sort=False):
        by = g.set_index("method")
        if method not in by.index:
            continue
        m = by.loc[method]
        for b in BASELINES:
            if b not in by.index or b == method:
                continue
            rows.append({"setting": setting, "size": size, "baseline": b, **gain(m, by.loc[b])})
    return pd.DataFrame(rows)


def gain(m: pd.Series, base: pd.Series) -> dict[str, float]:
    """The paper's improvement of ``m`` over ``base`` (summary rows): MAE decrease % and CCC increase %."""
    return {
        "mae_decrease_pct": 100 * (base["mae"] - m["mae"]) / base["mae"],
        "ccc_increase_pct": 100 * (m["ccc"] - base["ccc"]) / abs(base["ccc"])
        if base["ccc"] and math.isfinite(base["ccc"])
        else math.nan,
    }


PAIRS = (
    ("finetuned", "scratch"),
    ("finetuned", "qrf"),
    ("finetuned", "rf"),
    ("stacked-qrf", "qrf"),
    ("auto", "qrf"),
)


def paired(results: dict[str, Any], a: str, b: str) -> pd.DataFrame:
    """Per setting × size: mean and standard error of ``a``'s MAE relative to ``b``'s (%), paired by draw.

    Every method is fitted on the same training draw and scored on the same test fold, so the per-draw differences
    are paired; their standard error says which differences are noise.
    """
    rows = []
    for name, res in results["settings"].items():
        d = pd.DataFrame(res["records"])
        d = d[d["method"].isin([a, b])].copy()
        d["draw"] = d.groupby(["method", "size", "fold"]).cumcount()
        p = d.pivot_table(index=["size", "fold", "draw"], columns="method", values="mae")
        if a not in p.columns or b not in p.columns:
            continue
        p = p.dropna()
        rel = 100 * (p[a] - p[b]) / p[b]
        for size, x in rel.groupby(level="size"):
            se = float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else math.nan
            rows.append({"setting": name, "size": str(size), "mean": float(x.mean()), "se": se, "n": len(x)})
    return pd.DataFrame(rows)


def targets(df: pd.DataFrame) -> dict[str, Any]:
    """The three acceptance targets, checked per setting × size."""
    auto_rows, ft_rows = [], []
    for (setting, size), g in df.groupby(["setting", "size"], sort=False):
        by = g.set_index("method")
        forests = [b for b in ("rf", "qrf") if b in by.index]
        if "auto" in by.index and forests:
            best = min(forests, key=lambda b: by.loc[b, "mae"])
            gap = 100 * (by.loc["auto", "mae"] - by.loc[best, "mae"]) / by.loc[best, "mae"]
            others = by.drop(index=["auto", *forests])["mae"]
            auto_rows.append(
                {
                    "setting": setting,
                    "size": size,
                    "best_forest": best,
                    "gap_pct": gap,
                    "ok": gap <= 1.0,
                    # a strategy beats the best forest here: does auto too?
                    "best_other": str(others.idxmin()) if len(others) else None,
                    "other_wins": bool(len(others) and others.min() < by.loc[best, "mae"]),
                    "auto_wins": bool(gap < 0),
                }
            )
        if size in {str(s) for s in SMALL_SIZES} and {"finetuned", "scratch"} <= set(by.index):
            ft, sc = by.loc["finetuned"], by.loc["scratch"]
            ft_rows.append(
                {
                    "setting": setting,
                    "size": size,
                    "finetuned": ft["mae"],
                    "scratch": sc["mae"],
                    "ok": ft["mae"] < sc["mae"],
                    **gain(ft, sc),
                }
            )
    picp = df[["setting", "size", "method", "picp90"]].copy()
    picp["ok"] = picp["picp90"].between(0.85, 0.95)
    return {"auto": auto_rows, "finetuned_vs_scratch": ft_rows, "picp": picp.to_dict("records")}


#: the packages whose versions decide the numbers (random streams of the forests and the networks)
VERSIONED = ("numpy", "torch", "scikit-learn", "quantile-forest", "geesoil")


def package_versions() -> dict[str, str]:
    """Installed versions of :data:`VERSIONED`."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in VERSIONED:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def _mean(rows: list[dict[str, Any]], key: str) -> float:
    v = np.array([r[key] for r in rows], float)
    return float(np.nanmean(v)) if np.isfinite(v).any() else math.nan


def auto_choices(results: dict[str, Any]) -> pd.DataFrame:
    """Per setting × size: ``auto``'s mean weights on forests and transfer models, from the stored selections."""
    rows = []
    for name, res in results["settings"].items():
        for c in res.get("auto_choices", []):
            w = dict(zip(c["choice"].split("+"), c["weights"], strict=True))
            transfer = {k: v for k, v in w.items() if k not in ("rf", "qrf")}
            rows.append(
                {
                    "setting": name,
                    "size": str(c["size"]),
                    "forests": sum(v for k, v in w.items() if k in ("rf", "qrf")),
                    "transfer": sum(transfer.values()),
                    "top": max(transfer, key=transfer.get) if transfer else None,
                    "inner_folds": c["inner_folds"],
                    "oof_mae": c["oof_mae"],
                    "test_mae": c["mae"],
                }
            )
    if not rows:
        return pd.DataFrame()
    df = pd.DataFrame(rows)
    out = []
    for (setting, size), g in df.groupby(["setting", "size"], sort=False):
        tops = g["top"].dropna()
        out.append(
            {
                "setting": setting,
                "size": size,
                "fits": len(g),
                "forests": g["forests"].mean(),
                "transfer": g["transfer"].mean(),
                "top_transfer": f"`{tops.mode().iloc[0]}` ({(tops == tops.mode().iloc[0]).sum()}×)"
                if len(tops)
                else "–",
                "inner_folds": "–".join(
                    str(v) for v in sorted({g["inner_folds"].min(), g["inner_folds"].max()})
                ),
                "oof_mae": g["oof_mae"].mean(),
                "test_mae": g["test_mae"].mean(),
            }
        )
    return pd.DataFrame(out).sort_values(
        ["setting", "size"], key=lambda c: c.map(_size_order) if c.name == "size" else c, kind="stable"
    )


def reproducibility(results: dict[str, Any], other: dict[str, Any], file: str) -> dict[str, Any]:
    """Largest MAE / PICP90 differences between ``results`` and a re-run ``other`` over their common cells."""
    a, b = _summary_frame(results), _summary_frame(other)
    common = sorted(set(a["setting"]) & set(b["setting"]))
    if not common:
        raise SystemExit(f"--check-against {file}: no setting in common with the results")
    m = a.merge(b, on=["setting", "size", "method"], suffixes=("", "_re"))
    m = m[m["setting"].isin(common)]
    d_mae = (m["mae"] - m["mae_re"]).abs()
    return {
        "file": file,
        "date": other["meta"]["date"],
        "settings": common,
        "cells": int(len(m)),
        "max_abs_mae_diff": float(d_mae.max()),
        "max_rel_mae_diff_pct": float((100 * d_mae / m["mae"]).max()),
        "max_abs_picp_diff": float((m["picp90"] - m["picp90_re"]).abs().max()),
    }


# ------------------------------------------------------------------------------------------------ report
def _f(v: Any, nd: int = 2) -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{nd}f}"


def _pct(v: float) -> str:
    return "–" if not math.isfinite(v) else f"{v:+.1f} %"


def render(results: dict[str, Any]) -> str:
    """``docs/results.md`` from the saved results."""
    meta = results["meta"]
    df = _summary_frame(results)
    imp = improvements(df)
    tg = targets(df)
    out = [
        "# Transfer experiment on real data",
        "",
        "*Generated by `benchmarks/transfer_experiment.py` from `benchmarks/results/transfer.json`; do not edit by "
        "hand.*",
        "",
        f"- Run: {meta['date']} on {meta['machine']}; {meta['seconds'] / 60:.1f} min wall"
        + (
            f" ({meta['parallel_runs']} processes in parallel, one torch thread each, merged with `--merge`)"
            if meta.get("parallel_runs")
            else ""
        )
        + ("; " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) if meta.get("versions") else "")
        + ".",
        f"- Command: `{meta['command']}`",
        f"- Pretrained model: `{meta['pretrained']}` ({meta['pretrained_members']} members; fine-tuning used the "
        f"first {meta['budget']['members']}). The experiment regions and a 50 km buffer around them were held out "
        "of its pretraining (see its model card).",
        f"- Budget: {meta['budget']['folds']}-fold spatial-block CV, sizes "
        f"{', '.join(str(s) for s in meta['budget']['sizes'])} with {meta['budget']['repeats']} random draws per "
        f"size (one for `all`), fine-tuning ≤ {meta['budget']['epochs']} epochs, forests "
        f"{meta['budget']['trees']} trees, `auto`: {meta['budget']['auto_inner_folds']} inner spatial folds, "
        "1-member / "
        f"{meta['budget']['auto_selection_trees']}-tree candidates during selection"
        + (" (**quick mode**)" if meta.get("quick") else "")
        + ".",
        "- `auto` candidates: "
        + ", ".join(f"`{m}`" for m in meta.get("auto_transfer", AUTO_TRANSFER))
        + ", `regional-branch` (where region-only covariates exist), `rf`, `qrf`; "
        + meta.get(
            "auto_rule",
            "the convex least-absolute-deviation stack of their out-of-fold median predictions, shrunk halfway "
            "towards the default forest (`qrf`); intervals are normalised conformal intervals around that "
            "point prediction in log1p space (local scale: the chosen models' weighted 68 % log half-widths; "
            "spread factor: the conformal quantile of the stack's out-of-fold residuals over that scale). "
            "Inner folds: 3, or 5 where 3 would leave the networks fewer than 20 training samples (n = 25).",
        )
        + (
            " This run leaves out the strategies " + ", ".join(f"`{m}`" for m in skipped) + "."
            if (skipped := [m for m in QUICK_SKIP if m not in set(df["method"])])
            else ""
        ),
        "- Metrics on the outer test folds only, averaged over folds and draws: MAE and RMSE in g/kg SOC (0-30 cm), "
        "R², Lin's CCC, PICP = coverage of the 90 % prediction interval. Each model is scored by its median where "
        "it has one (the networks: the log-space ensemble mean back-transformed without smearing; QRF: its "
        "conditional median; `auto`: its weighted medians), `rf` by its mean: the median minimises absolute error "
        "on skewed SOC. Hyperparameters are fixed in the script; "
        "nothing is tuned or selected on test folds (`auto` selects by nested spatial CV inside each training draw).",
        "",
        "## Settings",
        "",
        "| setting | samples | selection | CV block | median SOC (g/kg) | run time |",
        "|---|---|---|---|---|---|",
    ]
    for res in results["settings"].values():
        s = res["setting"]
        out.append(
            f"| {s['title']} | {s['n']} | {s['selection']} | {s['block_km']:g} km | {s['y_median']:.1f} | "
            f"{s['seconds'] / 60:.1f} min |"
        )
        if res["config"].get("regional_covariates"):
            out.append(
                f"|  | region-only covariates: {', '.join(res['config']['regional_covariates'])} | | | | |"
            )
    out += ["", "## Results", ""]
    for name, res in results["settings"].items():
        g = df[df["setting"] == name]
        out += [
            f"### {res['setting']['title']}",
            "",
            "| size | method | MAE | RMSE | R² | CCC | PICP90 | draws |",
        ]
        out.append("|---|---|---|---|---|---|---|---|")
        for size in sorted(g["size"].unique(), key=_size_order):
            gs = g[g["size"] == size]
            best = gs["mae"].min()
            for _, r in gs.iterrows():
                mae = _f(r["mae"])
                mae = f"**{mae}**" if r["mae"] == best else mae
                out.append(
                    f"| {size} | {r['method']} | {mae} | {_f(r['rmse'])} | {_f(r['r2'], 3)} | {_f(r['ccc'], 3)} | "
                    f"{_f(r['picp90'], 3)} | {r['n_records']} |"
                )
        if res.get("skipped"):
            out.append("")
            out.append(
                f"Skipped fits: {len(res['skipped'])} (e.g. {res['skipped'][0]['method']}: "
                f"{res['skipped'][0]['reason'][:160]})."
            )
        out.append("")
    out += [
        "## Fine-tuned vs baselines (percent improvement)",
        "",
        "Positive = `finetuned` better. MAE decrease % = (MAE_base − MAE_ft) / MAE_base; CCC increase % = "
        "(CCC_ft − CCC_base) / |CCC_base|. The paper reports, on average over its regions, "
        f"**−{PAPER['mae_decrease_pct']} % MAE** and **+{PAPER['ccc_increase_pct']} % CCC** for fine-tuning versus "
        "regional-only models.",
        "",
    ]
    if not imp.empty:
        out += ["| setting | size | vs | ΔMAE % (decrease) | ΔCCC % (increase) |", "|---|---|---|---|---|"]
        for _, r in imp.sort_values(
            ["setting", "size"], key=lambda c: c.map(_size_order) if c.name == "size" else c
        ).iterrows():
            out.append(
                f"| {r['setting']} | {r['size']} | {r['baseline']} | {_pct(r['mae_decrease_pct'])} | "
                f"{_pct(r['ccc_increase_pct'])} |"
            )
        out += [
            "",
            "Averages over settings and sizes, for `finetuned` and for the other transfer methods (the paper's "
            "numbers are averages of fine-tuning versus regional-only models). Relative CCC changes are unstable "
            "where the baseline's CCC is near 0 (Niger, Malawi at small n), so medians are shown too:",
            "",
            "| method | vs | mean ΔMAE % | median ΔMAE % | mean ΔCCC % | median ΔCCC % | paper (ΔMAE / ΔCCC) |",
            "|---|---|---|---|---|---|---|",
        ]
        methods = [
            m
            for m in ("finetuned", "finetuned-gp", "regional-branch", "stacked-qrf", "auto")
            if m in set(df["method"])
        ]
        for method in methods:
            mi = imp if method == "finetuned" else improvements(df, method)
            for b, g in mi.groupby("baseline", sort=False):
                paper = (
                    f"{PAPER['mae_decrease_pct']:+.2f} % / {PAPER['ccc_increase_pct']:+.2f} %"
                    if b in ("rf", "qrf")
                    else "–"
                )
                out.append(
                    f"| {method} | {b} | {_pct(g['mae_decrease_pct'].mean())} | "
                    f"{_pct(g['mae_decrease_pct'].median())} | {_pct(g['ccc_increase_pct'].mean())} | "
                    f"{_pct(g['ccc_increase_pct'].median())} | {paper} |"
                )
    pairs = {f"{a} vs {b}": paired(results, a, b) for a, b in PAIRS}
    pairs = {k: v for k, v in pairs.items() if not v.empty}
    if pairs:
        keys = list(pairs)
        first = pairs[keys[0]]
        out += [
            "",
            "### How much of it is noise",
            "",
            "MAE of the first method relative to the second, mean ± standard error over the paired draws "
            "(same training draw, same test fold; negative = the first is better). Differences within about two "
            "standard errors are not resolved by this budget.",
            "",
            "| setting | size | draws | " + " | ".join(keys) + " |",
            "|---|---|---|" + "---|" * len(keys),
        ]
        for _, r in first.sort_values(
            ["setting", "size"], key=lambda c: c.map(_size_order) if c.name == "size" else c
        ).iterrows():
            cells = []
            for k in keys:
                m = pairs[k]
                m = m[(m["setting"] == r["setting"]) & (m["size"] == r["size"])]
                cells.append(
                    "–"
                    if m.empty
                    else f"{m['mean'].iloc[0]:+.1f} ± {m['se'].iloc[0]:.1f} %"
                    if math.isfinite(m["se"].iloc[0])
                    else f"{m['mean'].iloc[0]:+.1f} %"
                )
            out.append(f"| {r['setting']} | {r['size']} | {r['n']} | " + " | ".join(cells) + " |")
    auto_ok = [r for r in tg["auto"] if r["ok"]]
    ft_ok = [r for r in tg["finetuned_vs_scratch"] if r["ok"]]
    contested = [r for r in tg["auto"] if r["other_wins"]]
    picp_rows = tg["picp"]
    out += [
        "",
        "## Targets",
        "",
        f"- **`auto` within 1 % MAE of the best regional forest** (rf/qrf) at every setting × size: "
        f"{len(auto_ok)} of {len(tg['auto'])} met"
        + (
            "; misses: "
            + ", ".join(
                f"{r['setting']} n={r['size']} ({r['gap_pct']:+.1f} % vs {r['best_forest']})"
                for r in tg["auto"]
                if not r["ok"]
            )
            if len(auto_ok) < len(tg["auto"])
            else ""
        )
        + ".",
        f"- **`auto` beats the best regional forest wherever any other method does**: "
        f"{sum(r['auto_wins'] for r in contested)} of {len(contested)} such cells"
        + (
            "; misses: "
            + ", ".join(
                f"{r['setting']} n={r['size']} ({r['gap_pct']:+.1f} %; {r['best_other']} wins)"
                for r in contested
                if not r["auto_wins"]
            )
            if any(not r["auto_wins"] for r in contested)
            else ""
        )
        + ".",
        f"- **`finetuned` beats `scratch` at small n** ({', '.join(str(s) for s in SMALL_SIZES)}): "
        f"{len(ft_ok)} of {len(tg['finetuned_vs_scratch'])} met"
        + (
            "; misses: "
            + ", ".join(f"{r['setting']} n={r['size']}" for r in tg["finetuned_vs_scratch"] if not r["ok"])
            if len(ft_ok) < len(tg["finetuned_vs_scratch"])
            else ""
        )
        + (
            f"; on average over these cells MAE {-_mean(tg['finetuned_vs_scratch'], 'mae_decrease_pct'):+.1f} %, "
            f"CCC {_mean(tg['finetuned_vs_scratch'], 'ccc_increase_pct'):+.1f} % "
            f"(the paper: {-PAPER['mae_decrease_pct']:+.2f} % / {PAPER['ccc_increase_pct']:+.2f} %)"
            if tg["finetuned_vs_scratch"]
            else ""
        )
        + ".",
        "- **PICP90 within 0.85-0.95**: "
        + "; ".join(
            f"{m}: {sum(r['ok'] for r in picp_rows if r['method'] == m)}/{sum(1 for r in picp_rows if r['method'] == m)}"
            for m in dict.fromkeys(r["method"] for r in picp_rows)
        )
        + " setting × size cells.",
        "",
    ]
    choices = auto_choices(results)
    if not choices.empty:
        out += [
            "## What `auto` chose",
            "",
            "Mean weight per model in `auto`'s final combination (over folds and draws; forests = `rf` + `qrf`), "
            "the number of inner selection folds and `auto`'s own out-of-fold MAE against its outer test MAE "
            "(g/kg; inner CV is optimistic where the outer test blocks are harder).",
            "",
            "| setting | size | fits | forests | transfer | largest transfer weight | inner folds | inner MAE | "
            "test MAE |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for _, r in choices.iterrows():
            out.append(
                f"| {r['setting']} | {r['size']} | {r['fits']} | {r['forests']:.2f} | {r['transfer']:.2f} | "
                f"{r['top_transfer']} | {r['inner_folds']} | {_f(r['oof_mae'])} | {_f(r['test_mae'])} |"
            )
        out.append("")
    if results.get("reproducibility"):
        rep = results["reproducibility"]
        out += [
            "## Reproducibility",
            "",
            f"- Setting(s) {', '.join(rep['settings'])} re-run with the same options (only `--settings` and "
            f"`--output` differ; `{rep['file']}`, {rep['date']}), compared with `--check-against`: over "
            f"{rep['cells']} method × size cells the largest absolute "
            f"difference in MAE is {rep['max_abs_mae_diff']:.4f} g/kg ({rep['max_rel_mae_diff_pct']:.2f} %), "
            f"in PICP90 {rep['max_abs_picp_diff']:.4f}"
            + (" (identical)." if rep["max_abs_mae_diff"] == 0 and rep["max_abs_picp_diff"] == 0 else "."),
            "",
        ]
    if results.get("discussion"):
        out += ["## Discussion", "", results["discussion"].strip(), ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the reduced budget (fits ~25 min on 2 CPU cores)")
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma list of {', '.join(SETTINGS)}")
    ap.add_argument("--methods", default=None, help="comma list (default: every applicable method)")
    ap.add_argument("--folds", type=int)
    ap.add_argument("--repeats", type=int)
    ap.add_argument("--sizes", default=None, help="comma list, e.g. 25,50,100,200,all")
    ap.add_argument("--members", type=int)
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--trees", type=int)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--model", type=Path, default=model_path("coarse"))
    ap.add_argument("--output", type=Path, default=RESULTS)
    ap.add_argument("--doc", type=Path, default=DOC)
    ap.add_argument("--discussion", type=Path, default=None, help="markdown file appended as the discussion")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest for these small nets)"
    )
    ap.add_argument("--render-only", action="store_true")
    ap.add_argument(
        "--check-against",
        type=Path,
        default=None,
        help="a re-run's result file: store and report the largest MAE/PICP differences (implies --render-only)",
    )
    ap.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=None,
        help="combine result files (run in parallel) into --output",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("geesoil.covariates.local").setLevel(logging.ERROR)
    if args.merge:
        parts = [json.loads(p.read_text()) for p in args.merge]
        results = parts[0]
        results["meta"]["command"] = " & ".join(p["meta"]["command"] for p in parts)
        results["meta"]["seconds"] = max(p["meta"]["seconds"] for p in parts)
        results["meta"]["parallel_runs"] = len(parts)
        if len({json.dumps(p["meta"].get("versions"), sort_keys=True) for p in parts}) > 1:
            log.warning(
                "merged runs used different package versions: %s", [p["meta"].get("versions") for p in parts]
            )
        for p in parts[1:]:
            results["settings"].update(p["settings"])
        args.output.write_text(json.dumps(results, indent=1, default=float) + "\n")
        args.render_only = True
    if args.render_only or args.check_against:
        results = json.loads(args.output.read_text())
        if args.check_against:
            rel = args.check_against.resolve()
            name = str(rel.relative_to(ROOT) if rel.is_relative_to(ROOT) else rel)
            results["reproducibility"] = reproducibility(results, json.loads(rel.read_text()), name)
            log.info("reproducibility: %s", results["reproducibility"])
            args.output.write_text(json.dumps(results, indent=1, default=float) + "\n")
        if args.discussion:
            results["discussion"] = args.discussion.read_text()
            args.output.write_text(json.dumps(results, indent=1, default=float) + "\n")
        args.doc.write_text(render(results))
        return
    base = QUICK if args.quick else Budget()
    over = {k: getattr(args, k) for k in ("folds", "repeats", "members", "epochs", "trees", "seed")}
    budget = Budget(**{**asdict(base), **{k: v for k, v in over.items() if v is not None}})
    if args.sizes:
        budget = Budget(
            **{**asdict(budget), "sizes": tuple(s if s == "all" else int(s) for s in args.sizes.split(","))}
        )
    import torch

    torch.set_num_threads(args.threads)
    full = load_model(args.model)
    pretrained = fewer_members(full, budget.members)
    methods = args.methods.split(",") if args.methods else None
    t0 = time.perf_counter()
    results: dict[str, Any] = {
        "meta": {
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores (shared), Python {platform.python_version()}",
            # the forests' and networks' random streams depend on these: a fresh install may change the numbers
            "versions": package_versions(),
            "command": "python benchmarks/transfer_experiment.py "
            + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
            "pretrained": str(
                args.model.relative_to(ROOT) if args.model.is_relative_to(ROOT) else args.model
            ),
            "pretrained_members": len(full.nets_),
            "budget": asdict(budget),
            "quick": args.quick,
            "auto_transfer": list(AUTO_TRANSFER),
        },
        "settings": {},
    }
    if args.discussion:
        results["discussion"] = args.discussion.read_text()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    for name in args.settings.split(","):
        results["settings"][name] = run_setting(SETTINGS[name], budget, pretrained, methods, args.quick)
        results["meta"]["seconds"] = round(time.perf_counter() - t0, 1)
        args.output.write_text(json.dumps(results, indent=1, default=float) + "\n")
        args.doc.parent.mkdir(parents=True, exist_ok=True)
        args.doc.write_text(render(results))
    print(json.dumps({"seconds": results["meta"]["seconds"], "output": str(args.output)}))


if __name__ == "__main__":
    main()
