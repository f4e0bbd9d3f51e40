"""``geesoil pretrain``, ``geesoil finetune`` and ``geesoil evaluate``: thin click wrappers over the model library."""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import pandas as pd

from geesoil.errors import ModelError

log = logging.getLogger(__name__)

_SOURCE_HELP = (
    "Covariate source: a pack folder (with pack.json), 'starter' or 'ee'. Repeat to combine (covariates are "
    "looked up by name across sources, the first source wins), e.g. a global pack plus a regional one."
)
_SAMPLES_HELP = (
    "Sample table (CSV, Parquet, GeoJSON, GeoPackage): raw horizons (harmonised to 0-30 cm on the fly) or an "
    "already harmonised table."
)

_target = click.option(
    "--target", default="oc_gkg", show_default=True, help="Column with the property to map (g/kg for SOC)."
)
_seed = click.option("--seed", default=0, show_default=True, type=int, help="Random seed (folds, models).")
_sources = click.option(
    "--covariates", "sources", multiple=True, required=True, metavar="SRC", help=_SOURCE_HELP
)
_output = click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Model file to write.",
)


def _load(path: Path, target: str) -> pd.DataFrame:
    from geesoil.samples import load_samples

    return load_samples(path, target=target)


def _open(sources: Sequence[str]) -> Any:
    from geesoil.covariates.open import open_sources

    return open_sources(list(sources))


def _load_pretrained(path: Path) -> Any:
    from geesoil.model.io import load_model

    model = load_model(path)
    if not hasattr(model, "nets_") or getattr(model, "kind", "") != "soilnet":
        raise ModelError(
            f"{path}: is a {getattr(model, 'kind', '?')} model, not a pretrained soilnet; "
            "create one with 'geesoil pretrain'"
        )
    return model


def _csv_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    return items or None


@click.command("pretrain")
@click.option(
    "--samples",
    "sample_files",
    multiple=True,
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help=_SAMPLES_HELP + " Repeat to pool several sources (spatially de-duplicated, the first file wins).",
)
@_sources
@_output
@click.option("--members", default=5, show_default=True, type=int, help="Deep-ensemble members.")
@click.option(
    "--epochs", default=200, show_default=True, type=int, help="Maximum training epochs per member."
)
@click.option(
    "--window",
    default=0,
    show_default=True,
    type=click.IntRange(0, 2),
    help="Pixels of spatial context each side of a sample: 0 = the sample's pixel, 1 = a 3x3 window, 2 = 5x5. "
    "Every model fine-tuned or mapped from this one uses the same window.",
)
@click.option(
    "--window-step",
    "window_step",
    type=click.FloatRange(min=0, min_open=True),
    metavar="METRES",
    help="Pixel size of the window in metres [default: the covariates' native resolution].",
)
@_seed
@_target
def pretrain(
    sample_files: tuple[Path, ...],
    sources: tuple[str, ...],
    output: Path,
    members: int,
    epochs: int,
    window: int,
    window_step: float | None,
    seed: int,
    target: str,
) -> None:
    """Pretrain the global SOC network (a SoilNet deep ensemble) on pooled sample tables.

    Samples of several files are pooled with spatial de-duplication (sources share profiles); samples where every
    covariate is missing are dropped.

    With --window 1 (or 2) each covariate branch sees a 3x3 (5x5) window of pixels around the sample, --window-step
    metres apart (GSoilCPM's spatial context); the window is stored in the model and used again when fine-tuning
    and mapping, at any map scale.

    \b
    Example:
      geesoil pretrain --samples wise.parquet --samples afsp.parquet --covariates starter \\
          --members 5 --epochs 200 -o global.geesoil
      geesoil pretrain --samples wise.parquet --covariates starter --window 1 -o global-w1.geesoil
    """
    from geesoil.covariates.window import Context
    from geesoil.evaluate import covariate_table, require_samples
    from geesoil.mapping.run import native_resolution_m
    from geesoil.model.io import save_model
    from geesoil.model.network import SoilNet
    from geesoil.samples import pool_sources

    frames = [_load(f, target) for f in sample_files]
    pooled = pool_sources(frames) if len(frames) > 1 else frames[0]
    source = _open(sources)
    where = ", ".join(str(f) for f in sample_files)
    context = None
    if window:
        numeric = [s.name for s in source.specs if not s.is_categorical]
        window_step = window_step or native_resolution_m(source, numeric)
        context = Context(window, window_step, tuple(numeric))
    pooled, X, y = covariate_table(pooled, source, target=target, where=where, context=context)
    require_samples(len(y), where)
    specs = [s for s in source.specs if X[s.name].notna().any()]
    dropped = [s.name for s in source.specs if s not in specs]
    if dropped:
        log.warning("covariates with no value at any sample are left out: %s", ", ".join(dropped))
    groups = pooled["source"].astype(str).tolist() if "source" in pooled.columns else None
    model = SoilNet(
        specs,
        n_members=members,
        max_epochs=epochs,
        window=window,
        window_step_m=window_step if window else None,
        random_state=seed,
    )
    model.fit(X, y, sources=groups)
    save_model(model, output)
    click.echo(
        f"pretrained soilnet on {len(y)} samples, {len(specs)} covariates, {members} members -> {output}",
        err=True,
    )


@click.command("finetune")
@click.option(
    "--model",
    "model_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Pretrained model file (from 'geesoil pretrain').",
)
@click.option(
    "--samples",
    "sample_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help=_SAMPLES_HELP,
)
@_sources
@click.option(
    "--strategy",
    default="auto",
    show_default=True,
    help="auto (chosen by nested spatial CV), a fine-tuning strategy (finetuned, global, finetuned-gp, "
    "regional-branch, discriminative, coral), stacked-qrf (a regional quantile forest that also sees the "
    "pretrained model's prediction), scratch (same network, regional data only) or a regional-only forest "
    "(rf, qrf).",
)
@_seed
@_target
@_output
def finetune(
    model_path: Path,
    sample_file: Path,
    sources: tuple[str, ...],
    strategy: str,
    seed: int,
    target: str,
    output: Path,
) -> None:
    """Adapt a pretrained model to a region's samples and save the regional model.

    Covariates the pretrained model does not know (e.g. from a regional pack) are region-only: they go to the
    regional-branch strategy and to the forests (stacked-qrf, rf, qrf); 'auto' considers them all.

    \b
    Example:
      geesoil finetune --model global.geesoil --samples edgeroi.parquet \\
          --covariates starter --covariates edgeroi_pack --strategy auto -o edgeroi.geesoil
    """
    from geesoil.model.adapt import fit_regional
    from geesoil.model.io import save_model

    pretrained = _load_pretrained(model_path)
    fit = fit_regional(
        pretrained,
        _load(sample_file, target),
        _open(sources),
        strategy=strategy,
        seed=seed,
        target=target,
        where=str(sample_file),
    )
    save_model(fit.model, output)
    click.echo(f"fitted {fit.description} on {len(fit.table.y)} samples -> {output}", err=True)


@click.command("evaluate")
@click.option(
    "--model",
    "model_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Pretrained model file; without it only scratch, rf and qrf are evaluated.",
)
@click.option(
    "--samples",
    "sample_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help=_SAMPLES_HELP,
)
@_sources
@click.option("--folds", default=5, show_default=True, type=int, help="Outer cross-validation folds.")
@click.option(
    "--spatial-block-km",
    type=float,
    default=None,
    help="Spatial block CV with square blocks of this size (km); default: random location folds.",
)
@click.option(
    "--sizes",
    default=None,
    metavar="N,N,...",
    help="Learning-curve training sizes drawn from each training fold, e.g. 25,50,100,all (default: all).",
)
@click.option(
    "--repeats", default=3, show_default=True, type=int, help="Random draws per learning-curve size."
)
@click.option(
    "--methods",
    default=None,
    metavar="M,M,...",
    help="Methods to compare, e.g. auto,finetuned,global,scratch,rf,qrf (default: all available).",
)
@_seed
@_target
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write records and summary as JSON here (default: stdout).",
)
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def evaluate(
    model_path: Path | None,
    sample_file: Path,
    sources: tuple[str, ...],
    folds: int,
    spatial_block_km: float | None,
    sizes: str | None,
    repeats: int,
    methods: str | None,
    seed: int,
    target: str,
    json_out: Path | None,
    no_progress: bool,
) -> None:
    """Cross-validate transfer strategies against regional-only baselines on a region's samples.

    Every method is retrained in every fold (and learning-curve draw); model selection happens inside training
    folds only. Each model is scored by its median where it has one (the networks, qrf, auto; rf by its mean),
    which minimises absolute error on skewed SOC. A summary table goes to stderr; all records and the summary go to
    --json (or stdout). On a CPU, 'auto' costs about twenty small network fits per fold and size: use --methods to
    compare fewer.

    \b
    Example:
      geesoil evaluate --model global.geesoil --samples edgeroi.parquet \\
          --covariates starter --covariates edgeroi_pack --folds 5 --spatial-block-km 10 \\
          --sizes 25,50,100,all --repeats 3 --methods auto,finetuned,rf,qrf --json edgeroi_eval.json
    """
    from geesoil.evaluate import evaluate as run_evaluation
    from geesoil.evaluate import format_table
    from geesoil.model.adapt import regional_table

    pretrained = _load_pretrained(model_path) if model_path is not None else None
    table = regional_table(
        pretrained, _load(sample_file, target), _open(sources), target=target, where=str(sample_file)
    )
    result = run_evaluation(
        table.samples,
        table.X,
        table.y,
        pretrained=pretrained,
        methods=_csv_list(methods),
        folds=folds,
        spatial_block_km=spatial_block_km,
        sizes=_csv_list(sizes),
        repeats=repeats,
        seed=seed,
        covariates=table.covariates,
        progress=not no_progress,
    )
    result["config"]["samples"] = str(sample_file)
    result["config"]["model"] = str(model_path) if model_path else None
    result["config"]["covariate_sources"] = list(sources)
    click.echo(format_table(result), err=True)
    text = json.dumps(_json_safe(result), indent=1)
    if json_out is None:
        sys.stdout.write(text + "\n")
    else:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(text + "\n")
        click.echo(f"wrote {json_out}", err=True)


def _json_safe(obj: Any) -> Any:
    """NaN/inf become null (strict JSON); numpy scalars become Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, str | bytes):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
