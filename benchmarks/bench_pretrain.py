"""Benchmark: SoilNet pretraining wall time and peak RSS on the shared global set, and its scaling with table size.

Usage: ``python benchmarks/bench_pretrain.py [--full] [--device cpu|cuda|auto] [--members N] [--scales 1,10,100]``.

Three measurements, each in its own child process (so each has its own peak RSS):

1. ``prepare``: the pretraining samples of ``benchmarks/pretrain_models.py`` (WISE + ISIS + AfSP, 0-30 cm, pooled and
   de-duplicated, experiment regions held out; ~21.6k samples) with the shared coarse pack's covariates sampled at
   them, written to a temporary Parquet table.
2. ``convergence``: a SoilNet fit on that table to early stopping (patience 20, at most ``--max-epochs``), validation
   split by 100 km blocks as for the shipped model. Default 1 member; ``--full`` trains the default 5-member ensemble.
3. ``scaling``: the same table enlarged ×1, ×10, ×100 synthetically (copies with lon/lat jittered by up to 0.05°,
   continuous covariates by ±2 %, SOC by ±5 %) and trained for a fixed ``--scaling-epochs`` (no early stopping).
   Figures: seconds per epoch, whole-fit seconds (encoding, calibration included), peak RSS and the RSS just before
   ``fit`` (interpreter, torch and the table) per scale, and the log-log scaling exponents (1 = linear).
   ``--full`` instead trains every scale to convergence (early stopping as in 2.; at 100× each epoch takes ~15 s on
   2 cores, and up to ``--max-epochs`` of them run), so its fit times are times to convergence.

Training threads: geesoil trains with one intra-op thread (``geesoil.model.train.TRAIN_THREADS``).
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
import tempfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    add_output_args,
    machine_info,
    make_result,
    out_dir_of,
    run_child,
    save_result,
    scaling_exponent,
    shared_data,
    timer,
    vm_rss_mb,
)

NAME = "pretrain"
#: validation blocks, as for the shipped models (benchmarks/pretrain_models.py)
VALIDATION_BLOCK_KM = 100.0


def prepare(out: str) -> dict[str, Any]:
    """Child: pretraining samples + coarse-pack covariates → ``out`` (Parquet with X, ``oc_gkg``)."""
    logging.basicConfig(level=logging.ERROR)
    from pretrain_models import pack_sources, pretraining_samples

    from geesoil.covariates.open import open_sources
    from geesoil.evaluate import covariate_table

    with timer() as t_samples:
        samples, _ = pretraining_samples(shared_data() / "soil")
    with timer() as t_cov:
        source = open_sources(pack_sources("coarse"))
        samples, X, y = covariate_table(samples, source, where="global samples (coarse)")
    names = [s.name for s in source.specs if X[s.name].notna().any()]
    table = X[names + ["lon", "lat"]].assign(oc_gkg=y)
    table.to_parquet(out)
    return {
        "n": len(table),
        "covariates": names,
        "samples_s": t_samples.s,
        "covariates_s": t_cov.s,
    }


def enlarge(
    table: Any, factor: int, seed: int = 0, *, categorical: Collection[str] = (), jitter_deg: float = 0.05
) -> Any:
    """``factor`` copies of ``table``: the first as is, the others jittered (lon/lat ≤ ``jitter_deg``, other
    columns ±2 %, ``oc_gkg`` ±5 %); the ``categorical`` columns (class codes) are copied unchanged."""
    import pandas as pd

    if factor <= 1:
        return table.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    rest = pd.concat([table] * (factor - 1), ignore_index=True)
    n = len(rest)
    rest["lon"] = np.clip(rest["lon"] + rng.uniform(-jitter_deg, jitter_deg, n), -180, 180)
    rest["lat"] = np.clip(rest["lat"] + rng.uniform(-jitter_deg, jitter_deg, n), -90, 90)
    for col in rest.columns:
        if col in ("lon", "lat") or col in categorical:
            continue
        values = rest[col].to_numpy(dtype=float)
        scale = 0.05 if col == "oc_gkg" else 0.02
        rest[col] = values * (1 + rng.uniform(-scale, scale, n))
    return pd.concat([table, rest], ignore_index=True)


def train(
    table: str,
    *,
    factor: int = 1,
    members: int = 1,
    max_epochs: int = 200,
    patience: int = 20,
    batch_size: int = 1024,
    device: str = "cpu",
    seed: int = 0,
    warmup: bool = True,
) -> dict[str, Any]:
    """Child: fit a SoilNet on ``table`` enlarged ``factor`` times; returns timings and the training outcome."""
    import pandas as pd

    from geesoil.covariates.open import open_sources
    from geesoil.cv import block_ids
    from geesoil.model.network import SoilNet

    logging.basicConfig(level=logging.ERROR)
    frame = pd.read_parquet(table)
    specs = [s for s in open_sources([str(shared_data() / "covariates")]).specs if s.name in frame.columns]
    frame = enlarge(frame, factor, seed, categorical={s.name for s in specs if s.is_categorical})
    y = frame.pop("oc_gkg").to_numpy(float)
    groups = block_ids(frame["lon"], frame["lat"], VALIDATION_BLOCK_KM)

    def model(epochs: int, n_members: int) -> SoilNet:
        return SoilNet(
            specs,
            n_members=n_members,
            max_epochs=epochs,
            patience=patience,
            batch_size=batch_size,
            device=device,
            random_state=seed,
            progress=False,
        )

    if warmup:  # first-call costs (allocator, kernels) are not per-epoch costs
        model(1, 1).fit(frame.iloc[:2048], y[:2048], groups=groups[:2048])
    gc.collect()
    rss_before = vm_rss_mb()
    with timer() as t:
        fitted = model(max_epochs, members).fit(frame, y, groups=groups)
    loop_s = sum(m["seconds"] for m in fitted.members_)
    epochs = sum(m["epochs"] for m in fitted.members_)
    return {
        "n": len(frame),
        "rss_before_fit_mb": rss_before,
        "fit_s": t.s,
        "train_loop_s": loop_s,
        "epochs": epochs,
        "epochs_per_member": [m["epochs"] for m in fitted.members_],
        "best_epochs": [m["best_epoch"] for m in fitted.members_],
        "epoch_s": loop_s / max(epochs, 1),
        "validation_mae_gkg": fitted.metrics_["validation"]["mae"],
    }


def run(
    *,
    members: int = 1,
    max_epochs: int = 200,
    scales: tuple[int, ...] = (1, 10, 100),
    scaling_epochs: int | None = 2,
    device: str = "cpu",
    seed: int = 0,
    full: bool = False,
) -> dict[str, Any]:
    """All three measurements; returns the result dict (not yet saved)."""
    machine = machine_info(device)
    with tempfile.TemporaryDirectory(prefix="geesoil-bench-pretrain-") as tmp:
        table = str(Path(tmp) / "global.parquet")
        prep = run_child("bench_pretrain:prepare", {"out": table})
        conv = run_child(
            "bench_pretrain:train",
            {"table": table, "members": members, "max_epochs": max_epochs, "device": device, "seed": seed},
        )
        scaling = {}
        for factor in scales:
            child = run_child(
                "bench_pretrain:train",
                {
                    "table": table,
                    "factor": factor,
                    "members": 1,
                    # None: to convergence, like the convergence run
                    "max_epochs": scaling_epochs or max_epochs,
                    "patience": scaling_epochs + 1 if scaling_epochs else 20,
                    "device": device,
                    "seed": seed,
                },
            )
            scaling[f"x{factor}"] = {
                "n": child.value["n"],
                "epoch_s": child.value["epoch_s"],
                "epochs": child.value["epochs"],
                "fit_s": child.value["fit_s"],
                "peak_rss_mb": child.peak_rss_mb,
                "rss_before_fit_mb": child.value["rss_before_fit_mb"],
            }
    figures: dict[str, Any] = {
        "samples": prep.value["n"],
        "covariates": len(prep.value["covariates"]),
        "prepare_s": prep.value["samples_s"] + prep.value["covariates_s"],
        "prepare_peak_rss_mb": prep.peak_rss_mb,
        "convergence": {
            "fit_s": conv.value["fit_s"],
            "peak_rss_mb": conv.peak_rss_mb,
            "epochs_per_member": conv.value["epochs_per_member"],
            "best_epochs": conv.value["best_epochs"],
            "epoch_s": conv.value["epoch_s"],
            "validation_mae_gkg": conv.value["validation_mae_gkg"],
        },
        "scaling": scaling,
    }
    if len(scales) >= 2:
        ns = [scaling[f"x{f}"]["n"] for f in scales]
        figures["scaling_exponent_epoch"] = scaling_exponent(
            ns, [scaling[f"x{f}"]["epoch_s"] for f in scales]
        )
        figures["scaling_exponent_fit"] = scaling_exponent(ns, [scaling[f"x{f}"]["fit_s"] for f in scales])
        figures["scaling_exponent_rss"] = scaling_exponent(
            ns, [scaling[f"x{f}"]["peak_rss_mb"] for f in scales]
        )
    params = {
        "table": "WISE+ISIS+AfSP 0-30 cm, experiment regions held out (pretrain_models.pretraining_samples), "
        "coarse pack covariates",
        "members": members,
        "max_epochs": max_epochs,
        "patience": 20,
        "batch_size": 1024,
        "validation_block_km": VALIDATION_BLOCK_KM,
        "scales": list(scales),
        "scaling_epochs": scaling_epochs,
        "scaling_members": 1,
        "device": device,
        "seed": seed,
        "full": full,
    }
    notes = [
        "convergence and every scale run in their own child process; peak RSS includes the interpreter, torch "
        "and the table",
        "scaled tables are jittered copies of the real one (synthetic), trained for a fixed number of epochs",
    ]
    # informational (not regressions): exponents and epoch counts
    directions = {
        "scaling_exponent_epoch": "info",
        "scaling_exponent_fit": "info",
        "scaling_exponent_rss": "info",
    }
    return make_result(NAME, params, figures, machine=machine, directions=directions, notes=notes)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--full", action="store_true", help="5 members, and every scale trained to convergence (long)"
    )
    ap.add_argument("--members", type=int, default=None, help="ensemble members (default 1; --full: 5)")
    ap.add_argument("--max-epochs", type=int, default=200)
    ap.add_argument("--scales", default="1,10,100", help="comma-separated table multipliers")
    ap.add_argument(
        "--scaling-epochs",
        type=int,
        default=None,
        help="epochs per scale (default 2; --full: to convergence)",
    )
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto (CUDA when torch sees it)")
    ap.add_argument("--seed", type=int, default=0)
    add_output_args(ap)
    args = ap.parse_args(argv)
    members = args.members or (5 if args.full else 1)
    scaling_epochs = args.scaling_epochs or (None if args.full else 2)
    scales = tuple(int(s) for s in args.scales.split(",") if s.strip())
    result = run(
        members=members,
        max_epochs=args.max_epochs,
        scales=scales,
        scaling_epochs=scaling_epochs,
        device=args.device,
        seed=args.seed,
        full=args.full,
    )
    save_result(result, out_dir_of(args))


if __name__ == "__main__":
    main()
