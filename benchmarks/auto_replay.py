"""Replay ``auto``'s selection on the transfer experiment's draws: which rule and which point prediction lose least.

For every outer fold and training draw of ``transfer_experiment.py`` (same folds, draws, quick budget with ``--repeats 3`` and seeds), each
``auto`` candidate is fitted on the inner folds (out-of-fold predictions: mean, median and intervals) and on the
whole draw (outer test predictions). Selection rules are then compared offline on these cached predictions, without
refitting: the pick-one rule with a one-standard-error gate (``select(stack=False)``; the previous default, less its
blend), the shrunk convex stack (the default) at several shrinkages, networks scored by their mean or their median,
and ``auto``'s intervals against the previous rule (weighted member bounds widened by a CQR correction).

Usage: ``python benchmarks/auto_replay.py --settings edgeroi,malawi [--sizes ...] [--cache DIR] [--output FILE]``
(~8 min per setting on the shared 2-core machine, one torch thread). The cache of per-draw predictions holds values
derived from the shared data, so it stays outside the repository (default ``/tmp/geesoil-auto-replay``); the summary
(MAE relative to the best forest per setting × size, PICP90 and width) is printed as JSON. ``--analyse-only`` re-reads the
cache.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import transfer_experiment as te  # noqa: E402

from geesoil import cv  # noqa: E402
from geesoil.baselines import CALIBRATED_ALPHAS  # noqa: E402
from geesoil.covariates.open import open_sources  # noqa: E402
from geesoil.errors import GeesoilError  # noqa: E402
from geesoil.evaluate import covariate_table  # noqa: E402
from geesoil.model.auto import (  # noqa: E402
    SCALE_ALPHA,
    AutoModel,
    calibrate_intervals,
    fewer_members,
    log_half_width,
    log_interval,
    select,
)
from geesoil.model.conformal import conformal_quantile  # noqa: E402
from geesoil.model.io import load_model  # noqa: E402

FORESTS = ("rf", "qrf")


def collect(name: str, sizes: list[int | None], repeats: int, cache: Path, seed: int = 0) -> Path:
    """Fit every candidate on the inner folds and on each draw; save predictions to ``cache/NAME.npz``."""
    setting, budget = te.SETTINGS[name], dataclasses.replace(te.QUICK, seed=seed)
    pre = fewer_members(load_model(te.model_path("coarse")), budget.members)
    region = te.REGIONS[setting.region]
    samples = region.select(te.shared_data() / "soil")
    words = [str(te.shared_data() / "covariates")]
    if setting.regional_pack:
        words.append(str(te.shared_data() / setting.regional_pack))
    source = open_sources(words)
    samples, X, y = covariate_table(samples, source, where=name)
    known = {c.name for c in pre.covariates}
    regional = [s for s in source.specs if s.name not in known and X[s.name].notna().any()]
    covs = list(pre.covariates) + regional
    X = X[[c.name for c in covs] + ["lon", "lat"]].reset_index(drop=True)
    params = te.method_params(budget, pre, region.block_km, bool(regional), True)["auto"]
    cands = params["candidates"]
    outer = cv.kfold(
        samples["lon"], samples["lat"], k=budget.folds, block_km=region.block_km, seed=budget.seed
    )
    arrays: dict[str, np.ndarray] = {}
    t0 = time.perf_counter()
    for fold in outer:
        draws = cv.learning_curve_draws(
            fold.train, [25, 50, 100, 200, None], repeats=repeats, seed=budget.seed + fold.index
        )
        for size, rep, idx in draws:
            if size not in sizes:
                continue
            key = f"{size or 'all'}/{fold.index}/{rep}"
            Xtr, ytr, Xte = X.iloc[idx], y[idx], X.iloc[fold.test]
            auto = AutoModel(
                pre, covariates=covs, regional_covariates=regional, random_state=budget.seed, **params
            )
            folds, _ = auto._inner_folds(Xtr, auto._min_train(cands))
            arrays[f"{key}/y"], arrays[f"{key}/yte"] = ytr, y[fold.test]
            for c in cands:
                oof = np.full((2 + 2 * len(CALIBRATED_ALPHAS), ytr.size), np.nan)
                try:
                    for f in folds:
                        m = auto._make(c, selection=True).fit(Xtr.iloc[f.train], ytr[f.train])
                        oof[:, f.test] = _predictions(m, Xtr.iloc[f.test])
                except GeesoilError:
                    oof[:] = np.nan
                arrays[f"{key}/oof/{c}"] = oof
                arrays[f"{key}/test/{c}"] = _predictions(auto._make(c, selection=False).fit(Xtr, ytr), Xte)
            print(f"{name} {key} {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache / f"{name}.npz", **arrays)
    return cache / f"{name}.npz"


def _predictions(model: Any, X: pd.DataFrame) -> np.ndarray:
    """Rows: mean (``predict``), median (``predict_median`` or ``predict``), then lo/hi per calibrated alpha."""
    mean = model.predict(X)
    med = model.predict_median(X) if hasattr(model, "predict_median") else mean
    rows = [mean, med]
    for a in CALIBRATED_ALPHAS:
        rows.extend(model.predict_interval(X, alpha=a))
    return np.vstack(rows)


def _draws(path: Path) -> dict[str, dict[str, Any]]:
    z = np.load(path)
    draws: dict[str, dict[str, Any]] = {}
    for k in z.files:
        size, fold, rep, *rest = k.split("/")
        d = draws.setdefault(f"{size}/{fold}/{rep}", {"size": size, "oof": {}, "test": {}})
        if rest[0] in ("y", "yte"):
            d[rest[0]] = z[k]
        else:
            d[rest[0]][rest[1]] = z[k]
    return draws


def _intervals(
    d: dict[str, Any],
    ok: dict[str, np.ndarray],
    w: list[tuple[str, float]],
    y: np.ndarray,
    yte: np.ndarray,
    pred: np.ndarray,
) -> dict[str, float]:
    """PICP90 and mean width on the outer test fold: ``auto``'s log-space conformal intervals
    (:func:`calibrate_intervals`) against the previous rule, the weighted bounds widened by a CQR correction."""
    a10, a32 = (2 + 2 * CALIBRATED_ALPHAS.index(a) for a in (0.1, SCALE_ALPHA))
    oof_point = sum(wi * ok[c][1] for c, wi in w)
    scale = {
        part: sum(wi * log_half_width(src[c][a32], src[c][a32 + 1]) for c, wi in w)
        for part, src in (("oof", ok), ("test", d["test"]))
    }
    cal = calibrate_intervals(y, oof_point, scale["oof"])
    lo_o, hi_o = (sum(wi * ok[c][a10 + i] for c, wi in w) for i in (0, 1))
    lo_t, hi_t = (sum(wi * d["test"][c][a10 + i] for c, wi in w) for i in (0, 1))
    score = np.maximum(lo_o - y, y - hi_o)
    corr = max(conformal_quantile(score[np.isfinite(score)], 0.1), 0.0)
    rules = {
        "log conformal": log_interval(pred, scale["test"], cal, 0.1),
        "weighted bounds + CQR": (np.minimum(lo_t - corr, pred), np.maximum(hi_t + corr, pred)),
    }
    out = {}
    for name, (lo, hi) in rules.items():
        out[f"picp90, {name}"] = float(np.mean((yte >= lo) & (yte <= hi)))
        out[f"width90, {name}"] = float(np.mean(hi - lo))
    return out


def analyse(paths: list[Path]) -> dict[str, Any]:
    """MAE of each rule relative to the best forest (%), network mean vs median MAE, PICP90 and width of intervals."""
    rows, cover = [], []
    for path in paths:
        for d in _draws(path).values():
            y, yte = d["y"], d["yte"]
            ok = {c: o for c, o in d["oof"].items() if np.isfinite(o[0]).all()}
            row = {"setting": path.stem, "size": d["size"]}
            for c, t in d["test"].items():
                row[f"{c} (mean)"] = np.mean(np.abs(t[0] - yte))
                row[f"{c} (median)"] = np.mean(np.abs(t[1] - yte))
            for point, r in (("mean", 0), ("median", 1)):
                oof = {c: o[r] for c, o in ok.items()}
                rules = {f"pick-one, {point}": select(y, oof, stack=False)}
                rules.update(
                    {f"stack {s:g}, {point}": select(y, oof, shrink=s) for s in (0.0, 0.25, 0.5, 0.75)}
                )
                for rule, sel in rules.items():
                    w = list(zip(sel["members"], sel["weights"], strict=True))
                    pred = sum(wi * d["test"][c][r] for c, wi in w)
                    row[rule] = np.mean(np.abs(pred - yte))
                    if rule != "stack 0.5, median":
                        continue
                    cover.append(
                        {"setting": path.stem, "size": d["size"], **_intervals(d, ok, w, y, yte, pred)}
                    )
            rows.append(row)
    df = pd.DataFrame(rows)
    best = df[["rf (mean)", "qrf (mean)"]].groupby([df["setting"], df["size"]]).mean().min(axis=1)
    mean = df.groupby(["setting", "size"]).mean(numeric_only=True)
    rel = 100 * (mean.div(best, axis=0) - 1)
    nets = [c for c in mean.columns if c.endswith("(median)") and not c.startswith(FORESTS)]
    median_gain = {
        c.removesuffix(" (median)"): 100 * (mean[c] / mean[c.replace("(median)", "(mean)")] - 1) for c in nets
    }
    key = lambda i: f"{i[0]} n={i[1]}"  # noqa: E731
    return {
        "mae_vs_best_forest_pct": {key(i): r.round(2).to_dict() for i, r in rel.iterrows()},
        "network_median_vs_mean_mae_pct": {
            key(i): {n: round(g[i], 2) for n, g in median_gain.items()} for i in rel.index
        },
        "intervals_stack_0.5": {
            key(i): r.round(3).to_dict()
            for i, r in pd.DataFrame(cover).groupby(["setting", "size"]).mean(numeric_only=True).iterrows()
        },
        "draws": {key(i): int(n) for i, n in df.groupby(["setting", "size"]).size().items()},
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", default="edgeroi", help=f"comma list of {', '.join(te.SETTINGS)}")
    ap.add_argument("--sizes", default="25,50,100,200,all")
    ap.add_argument("--repeats", type=int, default=3, help="draws per size (as the documented run)")
    ap.add_argument("--output", type=Path, default=None, help="also write the summary JSON here")
    ap.add_argument(
        "--seed", type=int, default=0, help="outer folds, draws and models (as transfer_experiment)"
    )
    ap.add_argument("--cache", type=Path, default=None, help="default /tmp/geesoil-auto-replay/seed-N")
    ap.add_argument("--analyse-only", action="store_true")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    sizes = [None if s == "all" else int(s) for s in args.sizes.split(",")]
    names = args.settings.split(",")
    cache = args.cache or Path(f"/tmp/geesoil-auto-replay/seed-{args.seed}")
    paths = (
        [cache / f"{n}.npz" for n in names]
        if args.analyse_only
        else [collect(n, sizes, args.repeats, cache, args.seed) for n in names]
    )
    summary = json.dumps(analyse(paths), indent=1)
    if args.output:
        args.output.write_text(summary + "\n")
    print(summary)


if __name__ == "__main__":
    main()
