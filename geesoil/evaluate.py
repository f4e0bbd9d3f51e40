"""Honest comparison of transfer strategies with regional-only learners: outer k-fold CV plus learning curves.

For each outer fold (random location folds, or spatial blocks of ``spatial_block_km``) and each training-set size
(random draws from the training fold, ``repeats`` per size; ``None``/"all" = the whole fold), every method is
trained afresh on the training draw and scored on the test fold. Model selection (``auto``'s nested CV, early
stopping, conformal calibration) happens inside the training draw; the test fold is used only for scoring.
Every model is scored by its median where it has one (:func:`~geesoil.model.base.median_prediction`: the
networks, QRF, ``auto``; RF by its mean): MAE is the headline metric and the median minimises it on skewed SOC.

Methods: ``auto``, every fine-tuning strategy of :mod:`geesoil.model.finetune` (``finetuned``, ``global``, ...),
``scratch`` (a :class:`~geesoil.model.network.SoilNet` trained on the regional data only; with a pretrained model,
with its architecture and covariates plus the region-only ones) and the regional forests ``rf`` and ``qrf``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from geesoil import cv, metrics
from geesoil.baselines import QuantileForestSoil, RandomForestSoil, as_specs, merge_covariates
from geesoil.covariates.spec import CovariateSpec
from geesoil.covariates.window import Context, sample_context
from geesoil.errors import CovariateError, GeesoilError, ModelError, SampleFileError
from geesoil.model.auto import AutoModel, transfer_strategies
from geesoil.model.base import median_prediction

log = logging.getLogger(__name__)

#: fewer samples than this cannot give a meaningful cross-validation
MIN_SAMPLES = 20
BASELINES = ("rf", "qrf")
RECORD_KEYS = ("method", "size", "fold", "n_train", "n_test", *metrics.METRICS)
ALL = "all"


def covariate_table(
    samples: pd.DataFrame,
    source: Any,
    names: Sequence[str] | None = None,
    *,
    target: str = "oc_gkg",
    where: str = "samples",
    context: Context | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Covariates at the samples: ``(samples, X, y)`` without rows lacking the target or every covariate.

    ``X`` holds the covariates ``names`` (default: all the source has) plus ``lon``/``lat``, and with a pixel
    window ``context`` (a model's ``context``) the neighbour columns of its covariates. Raises
    :class:`CovariateError` when every covariate is missing at every sample (the source does not cover them).
    """
    if target not in samples.columns:
        raise SampleFileError(f"{where}: no target column {target!r}; choose it with --target")
    points = samples[["lon", "lat"]].reset_index(drop=True)
    X = source.sample(points, names)
    no_cov = X.isna().all(axis=1).to_numpy()
    if context is not None and context.window:
        X = pd.concat([X, sample_context(source, points, context)], axis=1)
    X.index = samples.index
    if no_cov.all():
        raise CovariateError(
            f"{where}: all covariates are missing (NaN) at all {len(X)} sample locations; "
            "use a covariate source that covers the samples' region"
        )
    keep = ~no_cov & samples[target].notna().to_numpy()
    if (~keep).any():
        log.warning(
            "%s: %d of %d samples dropped (no covariate values or no target)", where, (~keep).sum(), len(X)
        )
    samples = samples.loc[keep].reset_index(drop=True)
    X = X.loc[keep].reset_index(drop=True)
    X["lon"] = samples["lon"].to_numpy(float)
    X["lat"] = samples["lat"].to_numpy(float)
    return samples, X, samples[target].to_numpy(float)


def require_samples(n: int, where: str, minimum: int = MIN_SAMPLES) -> None:
    """Raise :class:`SampleFileError` when fewer than ``minimum`` usable samples remain."""
    if n < minimum:
        raise SampleFileError(
            f"{where}: only {n} usable samples (with a target and covariate values); at least {minimum} are needed"
        )


def available_methods(pretrained: Any | None, regional_covariates: Sequence[Any] = ()) -> list[str]:
    """Every method name ``evaluate`` accepts here, in report order."""
    transfer = transfer_strategies(pretrained, regional_covariates)
    head = ["auto", *transfer] if pretrained is not None else ["auto"]
    return [*head, "scratch", *BASELINES]


def default_methods(pretrained: Any | None, regional_covariates: Sequence[Any] = ()) -> list[str]:
    """All methods with a pretrained model; ``rf``/``qrf`` and ``scratch`` without one."""
    if pretrained is None:
        return ["scratch", *BASELINES]
    return available_methods(pretrained, regional_covariates)


def method_factory(
    name: str,
    pretrained: Any | None,
    covariates: Sequence[CovariateSpec],
    regional_covariates: Sequence[CovariateSpec],
    seed: int,
    params: dict[str, Any] | None = None,
) -> Callable[[], Any]:
    """A zero-argument function building a fresh, unfitted model for method ``name``."""
    params = dict(params or {})
    if name == "rf":
        return lambda: RandomForestSoil(covariates, random_state=seed, **params)
    if name == "qrf":
        return lambda: QuantileForestSoil(covariates, random_state=seed, **params)
    if name == "scratch" and pretrained is None:
        from geesoil.model.network import SoilNet

        params.setdefault("progress", False)
        return lambda: SoilNet(covariates, random_state=seed, **params)
    if name == "auto":
        return lambda: AutoModel(
            pretrained,
            covariates=covariates,
            regional_covariates=regional_covariates,
            random_state=seed,
            **params,
        )
    from geesoil.model.finetune import make_strategy

    if name == "scratch":  # the pretrained model's architecture, trained on the regional samples only
        params.setdefault("progress", False)

    return lambda: make_strategy(
        name, pretrained, regional_covariates=regional_covariates, random_state=seed, **params
    )


def check_methods(methods: Sequence[str], pretrained: Any | None, regional: Sequence[Any]) -> None:
    """Raise :class:`ModelError` explaining why a method name cannot be used here."""
    valid = available_methods(pretrained, regional)
    unknown = [m for m in methods if m not in valid]
    if not unknown:
        return
    if "regional-branch" in unknown and pretrained is not None and not regional:
        raise ModelError(
            "regional-branch needs region-only covariates: add a --covariates source (e.g. a regional pack) "
            "with covariates the pretrained model does not use"
        )
    if pretrained is None:
        raise ModelError(
            f"methods {', '.join(unknown)} need a pretrained model (--model); without one use {', '.join(valid)}"
        )
    raise ModelError(f"unknown methods {', '.join(unknown)}; choose from {', '.join(valid)}")


def evaluate(
    samples: pd.DataFrame,
    X: pd.DataFrame,
    y: Sequence[float] | np.ndarray,
    *,
    pretrained: Any | None = None,
    methods: Sequence[str] | None = None,
    folds: int = 5,
    spatial_block_km: float | None = None,
    sizes: Sequence[int | str | None] | None = None,
    repeats: int = 3,
    seed: int = 0,
    covariates: Sequence[CovariateSpec | str] | None = None,
    method_params: dict[str, dict[str, Any]] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Cross-validate ``methods`` on the region; returns ``{"records", "summary", "improvement", "skipped", "config"}``.

    ``samples`` gives ``lon``/``lat`` per row (folds are built from them); ``X`` holds the covariates (row-aligned
    with ``samples``; ``lon``/``lat`` are copied from ``samples`` when missing) and ``y`` the target in g/kg.
    ``covariates`` are the specs of every covariate the region has (default: the pretrained model's plus any other
    column of ``X``, as continuous); those the pretrained model lacks are region-only and go to ``regional-branch``
    and the forests. ``method_params`` overrides hyperparameters per method (e.g. ``{"rf": {"n_estimators": 100}}``).
    Each record has exactly :data:`RECORD_KEYS`; ``size`` is the draw size or ``"all"``.
    """
    y = np.asarray(y, dtype=float).ravel()
    if len(samples) != len(X) or len(X) != y.size:
        raise ValueError(f"samples ({len(samples)}), X ({len(X)}) and y ({y.size}) must have the same length")
    require_samples(y.size, "evaluate")
    samples = samples.reset_index(drop=True)
    X = X.reset_index(drop=True).copy()
    for c in ("lon", "lat"):
        if c not in X.columns:
            X[c] = samples[c].to_numpy(float)
    specs, regional = _covariates(X, pretrained, covariates)
    methods = list(methods) if methods else default_methods(pretrained, regional)
    check_methods(methods, pretrained, regional)
    sizes_ = _sizes(sizes)
    factories = {
        m: method_factory(m, pretrained, specs, regional, seed, (method_params or {}).get(m)) for m in methods
    }
    outer = cv.kfold(samples["lon"], samples["lat"], k=folds, block_km=spatial_block_km, seed=seed)
    plan = [
        (fold, size, idx)
        for fold in outer
        for size, _, idx in cv.learning_curve_draws(
            fold.train, sizes_, repeats=repeats, seed=seed + fold.index
        )
    ]
    for size in sizes_:
        if size is not None and not any(s == size for _, s, _ in plan):
            log.warning("size %d is not smaller than any training fold; skipped", size)
    records: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    bar = _progress(len(plan) * len(methods), progress)
    for fold, size, idx in plan:
        Xtr, ytr = X.iloc[idx], y[idx]
        Xte, yte = X.iloc[fold.test], y[fold.test]
        for m in methods:
            bar.set_postfix_str(f"fold {fold.index + 1} size {size or ALL} {m}", refresh=False)
            try:
                model = factories[m]().fit(Xtr, ytr)
            except GeesoilError as exc:  # e.g. a strategy that needs more samples than this draw has
                log.warning("%s at size %s, fold %d: %s", m, size or ALL, fold.index, exc)
                skipped.append({"method": m, "size": size or ALL, "fold": fold.index, "reason": str(exc)})
                bar.update()
                continue
            pred = median_prediction(model, Xte)
            lo, hi = model.predict_interval(Xte, alpha=0.1)
            rec = {
                "method": m,
                "size": size if size is not None else ALL,
                "fold": fold.index,
                "n_train": int(len(idx)),
                "n_test": int(len(fold.test)),
            }
            rec.update(metrics.scores(yte, pred, lo, hi))
            records.append(rec)
            bar.update()
    bar.close()
    summary = summarise(records)
    return {
        "records": records,
        "summary": summary,
        "improvement": improvement(summary),
        "skipped": skipped,
        "config": {
            "n": int(y.size),
            "methods": methods,
            "folds": folds,
            "fold_kind": "spatial" if spatial_block_km else "random",
            "spatial_block_km": spatial_block_km,
            "sizes": [s if s is not None else ALL for s in sizes_],
            "repeats": repeats,
            "seed": seed,
            "covariates": [c.name for c in specs],
            "regional_covariates": [c.name for c in regional],
            # which prediction the metrics score (see median_prediction)
            "scored": "median where the model has one (predict_median), else predict",
        },
    }


def _covariates(
    X: pd.DataFrame, pretrained: Any | None, given: Sequence[CovariateSpec | str] | None
) -> tuple[tuple[CovariateSpec, ...], tuple[CovariateSpec, ...]]:
    base = tuple(pretrained.covariates) if pretrained is not None else ()
    if given is None:
        names = {c.name for c in base}
        extra = [c for c in X.columns if c not in names and c not in ("lon", "lat")]
        specs = base + as_specs(extra)
    else:
        specs = merge_covariates(given, base)
    missing = [c.name for c in specs if c.name not in X.columns]
    if missing:
        raise ModelError(f"covariates missing from the sampled table: {', '.join(missing)}")
    base_names = {c.name for c in base}
    return specs, tuple(c for c in specs if c.name not in base_names)


def _sizes(sizes: Sequence[int | str | None] | None) -> list[int | None]:
    if not sizes:
        return [None]
    out: list[int | None] = []
    for s in sizes:
        if s is None or (isinstance(s, str) and s.strip().lower() == ALL):
            out.append(None)
        else:
            try:
                n = int(s)
            except (TypeError, ValueError) as exc:
                raise ModelError(f"learning-curve size {s!r} is not a whole number or 'all'") from exc
            if n < 1:
                raise ModelError(f"learning-curve size must be positive, got {n}")
            out.append(n)
    return out


def _progress(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="evaluate", unit="fit", disable=not enabled, leave=False)


def _size_key(size: int | str) -> tuple[int, float]:
    return (1, math.inf) if size == ALL else (0, float(size))


def summarise(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean of every metric per method × size (NaNs ignored), with the number of records averaged."""
    if not records:
        return []
    df = pd.DataFrame.from_records(records)
    order = list(dict.fromkeys(df["method"]))
    out = []
    for (method, size), g in df.groupby(["method", "size"], sort=False):
        row: dict[str, Any] = {"method": method, "size": size, "n_records": int(len(g))}
        row["n_train"] = float(g["n_train"].mean())
        for k in metrics.METRICS:
            v = g[k].to_numpy(float)
            row[k] = float(np.nanmean(v)) if np.isfinite(v).any() else math.nan
        out.append(row)
    out.sort(key=lambda r: (_size_key(r["size"]), order.index(r["method"])))
    return out


def improvement(summary: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per method × size: MAE decrease % and CCC increase % over the best regional forest at that size."""
    out = []
    by_size: dict[Any, list[dict[str, Any]]] = {}
    for row in summary:
        by_size.setdefault(row["size"], []).append(row)
    for size, rows in by_size.items():
        base = [r for r in rows if r["method"] in BASELINES and math.isfinite(r["mae"])]
        if not base:
            continue
        best = min(base, key=lambda r: r["mae"])
        for r in rows:
            if r["method"] == best["method"]:
                continue
            out.append(
                {
                    "method": r["method"],
                    "size": size,
                    "baseline": best["method"],
                    "mae_decrease_pct": metrics.mae_decrease_pct(r["mae"], best["mae"]),
                    "ccc_increase_pct": metrics.ccc_increase_pct(r["ccc"], best["ccc"]),
                }
            )
    return out


def format_table(result: dict[str, Any]) -> str:
    """The summary as a fixed-width text table (one row per method × size), for humans on stderr."""
    cols = ("mae", "rmse", "r2", "ccc", "bias", "picp90", "width90")
    imp = {(r["method"], r["size"]): r for r in result.get("improvement", [])}
    head = (
        f"{'method':<16}{'size':>6}{'n_train':>9}"
        + "".join(f"{c:>9}" for c in cols)
        + f"{'ΔMAE%':>8}{'ΔCCC%':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in result["summary"]:
        cells = "".join(f"{r[c]:>9.3f}" if math.isfinite(r[c]) else f"{'-':>9}" for c in cols)
        i = imp.get((r["method"], r["size"]))
        extra = (
            f"{i['mae_decrease_pct']:>8.1f}{i['ccc_increase_pct']:>8.1f}"
            if i and math.isfinite(i["mae_decrease_pct"]) and math.isfinite(i["ccc_increase_pct"])
            else f"{'':>8}{'':>8}"
        )
        lines.append(f"{r['method']:<16}{r['size']!s:>6}{r['n_train']:>9.0f}{cells}{extra}")
    cfg = result.get("config", {})
    if cfg:
        lines.append(
            f"{cfg['fold_kind']} {cfg['folds']}-fold CV on {cfg['n']} samples"
            + (f", {cfg['spatial_block_km']:g} km blocks" if cfg.get("spatial_block_km") else "")
            + "; ΔMAE%/ΔCCC%: improvement over the best of rf/qrf at the same size"
        )
    return "\n".join(lines)
