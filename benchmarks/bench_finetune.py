"""Benchmark: fine-tuning wall time for n = 50, 200, 1000 regional samples, per transfer strategy.

Usage: ``python benchmarks/bench_finetune.py [--sizes 50,200,1000] [--strategies finetuned,finetuned-gp,regional-branch]
[--model FILE] [--device cpu|cuda|auto]``.

Pretrained model: the shipped ``assets/models/global-coarse-v1.geesoil`` (its members are fine-tuned one by one).
Regional table: the Edgeroi profiles (0-30 cm, 323 samples) with the coarse pack's covariates and, for
``regional-branch``, the Edgeroi regional pack's 13 region-only covariates. Sizes up to 323 draw real samples; larger
ones draw from jittered copies (lon/lat ± 0.005°, continuous covariates ± 2 %, SOC ± 5 %; synthetic). Each fit
uses the strategy's defaults (at most 100 epochs, patience 25, batch 32), so time includes early stopping as a user
sees it; the epochs each member ran are recorded beside the time. One untimed warm-up fit runs first.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    REPO,
    add_output_args,
    machine_info,
    make_result,
    out_dir_of,
    peak_rss_mb,
    quiet_geesoil,
    save_result,
    scaling_exponent,
    shared_data,
    timer,
)

NAME = "finetune"
DEFAULT_MODEL = REPO / "assets" / "models" / "global-coarse-v1.geesoil"
STRATEGIES = ("finetuned", "finetuned-gp", "regional-branch")
SIZES = (50, 200, 1000)


def regional_table() -> tuple[Any, Any, list[Any]]:
    """Edgeroi 0-30 cm samples with coarse + regional covariates: ``(X, y, regional_specs)``."""
    from geesoil.covariates.open import open_sources
    from geesoil.evaluate import covariate_table
    from geesoil.samples import load_samples

    data = shared_data()
    samples = load_samples(data / "soil" / "edgeroi.parquet", depth=(0, 30), method="spline")
    regional = open_sources([str(data / "regional" / "edgeroi")])
    source = open_sources([str(data / "covariates"), str(data / "regional" / "edgeroi")])
    _, X, y = covariate_table(samples, source, where="Edgeroi samples")
    return X, y, list(regional.specs)


def draw(X: Any, y: Any, n: int, seed: int, categorical: set[str]) -> tuple[Any, np.ndarray]:
    """``n`` rows: real ones while they last, then jittered copies (see the module docstring)."""
    from bench_pretrain import enlarge

    table = X.assign(oc_gkg=y)
    factor = int(np.ceil(n / len(table)))
    big = enlarge(table, factor, seed, categorical=categorical, jitter_deg=0.005)
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(table), size=n, replace=False) if n <= len(table) else np.arange(n)
    out = big.iloc[rows].reset_index(drop=True)
    return out.drop(columns="oc_gkg"), out["oc_gkg"].to_numpy(float)


def run(
    *,
    model_path: Path = DEFAULT_MODEL,
    sizes: tuple[int, ...] = SIZES,
    strategies: tuple[str, ...] = STRATEGIES,
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    from geesoil.model.finetune import make_strategy
    from geesoil.model.io import load_model

    machine = machine_info(device)
    pretrained = load_model(model_path)
    X, y, regional = regional_table()
    categorical = {s.name for s in (*pretrained.covariates, *regional) if s.is_categorical}
    with warnings.catch_warnings(), quiet_geesoil():
        warnings.simplefilter("ignore")  # GP hyperparameters at their bounds on noise-like residuals
        Xw, yw = draw(X, y, 50, seed, categorical)
        make_strategy("finetuned", pretrained, max_epochs=1, device=device).fit(Xw, yw)  # warm-up
        figures: dict[str, Any] = {}
        for name in strategies:
            per: dict[str, Any] = {}
            for n in sizes:
                Xn, yn = draw(X, y, n, seed, categorical)
                model = make_strategy(
                    name, pretrained, regional_covariates=regional, random_state=seed, device=device
                )
                with timer() as t:
                    model.fit(Xn, yn)
                per[f"n{n}"] = {
                    "fit_s": t.s,
                    "epochs_per_member": [m.get("epochs") for m in model.members_],
                    "epochs_kept": model.metrics_.get("epochs_kept"),
                }
            if len(sizes) >= 2:
                per["scaling_exponent"] = scaling_exponent(sizes, [per[f"n{n}"]["fit_s"] for n in sizes])
            figures[name] = per
    figures["peak_rss_mb"] = peak_rss_mb()
    params = {
        "model": str(Path(model_path).relative_to(REPO))
        if Path(model_path).is_relative_to(REPO)
        else str(model_path),
        "members": len(pretrained.nets_),
        "region": "Edgeroi 0-30 cm (323 real samples; larger n from jittered copies)",
        "regional_covariates": len(regional),
        "sizes": list(sizes),
        "strategies": list(strategies),
        "fit_defaults": {"max_epochs": 100, "patience": 25, "batch_size": 32, "lr": 5e-4},
        "device": device,
        "seed": seed,
    }
    directions = {f"{s}.scaling_exponent": "info" for s in strategies}
    notes = ["time to early stopping: the number of epochs differs between sizes (see epochs_per_member)"]
    return make_result(NAME, params, figures, machine=machine, directions=directions, notes=notes)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--seed", type=int, default=0)
    add_output_args(ap)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    result = run(
        model_path=args.model,
        sizes=tuple(int(s) for s in args.sizes.split(",") if s.strip()),
        strategies=tuple(s.strip() for s in args.strategies.split(",") if s.strip()),
        device=args.device,
        seed=args.seed,
    )
    save_result(result, out_dir_of(args))


if __name__ == "__main__":
    main()
