"""Render ``docs/benchmarks.md`` from ``benchmarks/results/*.json`` (speed, memory, and an accuracy summary).

Usage: ``python benchmarks/report.py [--results benchmarks/results] [--output docs/benchmarks.md]``.

Every number in the page comes from the JSON; the page states the machine and date of each benchmark and says so
when other jobs were running while it was measured. The accuracy section summarises ``transfer.json`` (written by
``benchmarks/transfer_experiment.py``; details in ``docs/results.md``) when it is present;
the ablation section reads ``ablation.json`` (written by ``benchmarks/ablation.py``).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BUSY_CORES, REPO, RESULTS_DIR, load_results  # noqa: E402

DOC = REPO / "docs" / "benchmarks.md"
ORDER = ("pretrain", "finetune", "extract", "map", "map_large", "ablation")
#: the paper's average improvement of fine-tuning over regional-only models (Zhang et al. 2025)
PAPER_MAE_PCT = -10.93
PAPER_CCC_PCT = 29.04
TRANSFER_FILE = "transfer.json"
#: ablation MAE changes smaller than this (%) are negligible in practice even when resolved statistically
NEGLIGIBLE_MAE_PCT = 1.0
#: peak-RSS exponents (log RSS on log pixels) up to this count as flat
FLAT_EXPONENT = 0.05


# ------------------------------------------------------------------------------------------------ formatting
def num(v: Any, nd: int = 2) -> str:
    """A number for a table: ``–`` when missing, thousands separators for big values."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{nd}f}"


def pct(v: float | None) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:+.1f} %"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def _get(d: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, Mapping) or k not in d:
            return None
        d = d[k]
    return d


# ------------------------------------------------------------------------------------------------ sections
def machine_section(results: Mapping[str, Mapping[str, Any]]) -> list[str]:
    rows, busy = [], []
    for name in _ordered(results):
        m = results[name].get("machine", {})
        other = m.get("other_cpu_cores")
        rows.append(
            [
                f"`{name}`",
                m.get("date", "–"),
                str(m.get("cpu_model", "–")),
                num(m.get("cores")),
                f"{num(m.get('ram_gb'), 1)} GiB",
                str(m.get("torch", "–")),
                str(m.get("device", "–")),
                "–" if other is None else f"{other:.2f}",
            ]
        )
        if other is not None and other > BUSY_CORES:
            busy.append((name, other, m.get("cores")))
    lines = [
        "## Machine",
        "",
        *table(
            ["benchmark", "date", "CPU", "cores", "RAM", "torch", "device", "other processes' CPU (cores)"],
            rows,
        ),
        "",
        "Absolute times hold for this hardware only. Ratios (speed-ups, exponents, end-to-end vs inference) were "
        "measured side by side in one run and carry over better.",
    ]
    if busy:
        worst = max(b[1] for b in busy)
        lines += [
            "",
            f"**Measured while other jobs ran**: when {', '.join(f'`{b[0]}`' for b in busy)} started, other processes "
            f"used up to {worst:.1f} of the machine's {busy[0][2]} cores. Absolute times are pessimistic and noisy "
            "(a quiet machine is faster); rerun `make bench` on an idle machine before quoting them.",
        ]
    return lines


def pretrain_section(r: Mapping[str, Any]) -> list[str]:
    f, p = r["figures"], r["params"]
    conv = f.get("convergence", {})
    lines = [
        "## Pretraining (`benchmarks/bench_pretrain.py`)",
        "",
        f"Global set: {num(f.get('samples'))} samples × {num(f.get('covariates'))} covariates "
        f"({p.get('table', '')}). Preparing it (harmonising horizons, pooling, sampling the coarse pack) took "
        f"{num(f.get('prepare_s'), 1)} s with a peak RSS of {num(f.get('prepare_peak_rss_mb'), 0)} MiB.",
        "",
        f"To convergence on {p.get('device', 'cpu')} ({p.get('members')} member(s), early stopping with patience "
        f"{p.get('patience')}, at most {p.get('max_epochs')} epochs, batch {p.get('batch_size')}):",
        "",
        *table(
            ["members", "epochs run (best)", "s / epoch", "fit wall time", "peak RSS", "validation MAE"],
            [
                [
                    num(p.get("members")),
                    ", ".join(
                        f"{e} ({b})"
                        for e, b in zip(
                            conv.get("epochs_per_member", []), conv.get("best_epochs", []), strict=False
                        )
                    ),
                    num(conv.get("epoch_s"), 3),
                    f"{num(conv.get('fit_s'), 1)} s",
                    f"{num(conv.get('peak_rss_mb'), 0)} MiB",
                    f"{num(conv.get('validation_mae_gkg'))} g/kg",
                ]
            ],
        ),
    ]
    scaling = f.get("scaling", {})
    if scaling:
        rows = [
            [
                k.lstrip("x") + "×",
                num(v.get("n")),
                num(v.get("epochs")),
                num(v.get("epoch_s"), 3),
                num(v.get("fit_s"), 1),
                num(v.get("rss_before_fit_mb"), 0),
                num(v.get("peak_rss_mb"), 0),
            ]
            for k, v in scaling.items()
        ]
        lines += [
            "",
            "Scaling with synthetic larger tables (jittered copies of the real one), 1 member, "
            + (
                f"{p.get('scaling_epochs')} epochs each"
                if p.get("scaling_epochs")
                else "each trained to convergence (fit s = time to convergence)"
            )
            + ", every scale in its own process:",
            "",
            *table(
                [
                    "scale",
                    "samples",
                    "epochs",
                    "s / epoch",
                    "fit s (all stages)",
                    "RSS before fit (MiB)",
                    "peak RSS (MiB)",
                ],
                rows,
            ),
            "",
            f"Log-log scaling exponents (1 = linear): time per epoch **{num(f.get('scaling_exponent_epoch'))}**, "
            f"whole fit {num(f.get('scaling_exponent_fit'))} (fixed costs weigh more at small n), peak RSS "
            f"{num(f.get('scaling_exponent_rss'))}.",
        ]
    if not p.get("full"):
        lines += [
            "",
            "Budget run; `python benchmarks/bench_pretrain.py --full` trains 5 members and every scale to convergence.",
        ]
    return lines


def finetune_section(r: Mapping[str, Any]) -> list[str]:
    f, p = r["figures"], r["params"]
    sizes = p.get("sizes", [])
    rows = []
    for strategy in p.get("strategies", []):
        per = f.get(strategy, {})
        cells = [f"`{strategy}`"]
        for n in sizes:
            c = per.get(f"n{n}", {})
            epochs = c.get("epochs_per_member") or []
            cells.append(f"{num(c.get('fit_s'), 1)} s ({'/'.join(str(e) for e in epochs)} ep)")
        cells.append(num(per.get("scaling_exponent")))
        rows.append(cells)
    return [
        "## Fine-tuning (`benchmarks/bench_finetune.py`)",
        "",
        f"Wall time of `fit` from the shipped `{Path(str(p.get('model', ''))).name}` ({p.get('members')} members, "
        f"each fine-tuned to early stopping; epochs run per member in brackets) on {p.get('region', '')}; "
        f"`regional-branch` adds the {p.get('regional_covariates')} Edgeroi regional covariates.",
        "",
        *table(["strategy", *[f"n = {n}" for n in sizes], "exponent"], rows),
        "",
        f"Peak RSS of the whole run: {num(f.get('peak_rss_mb'), 0)} MiB. Time depends on how long early stopping "
        "lets each member run as much as on n; `finetuned-gp` adds the Gaussian process fit (cubic in n).",
    ]


def _int_suffix(key: str) -> int | None:
    digits = "".join(c for c in key if c.isdigit())
    return int(digits) if digits else None


def _mb_per_s(v: Mapping[str, Any]) -> str:
    got, sent = v.get("mb_received_per_s"), v.get("mb_sent_per_s")
    if got is None and sent is None:
        return "–"
    return f"{num(got)} / {num(sent)}"


def extract_section(r: Mapping[str, Any]) -> list[str]:
    f, p = r["figures"], r["params"]
    loc = f.get("local", {})
    lines = [
        "## Covariate extraction (`benchmarks/bench_extract.py`)",
        "",
        *table(
            ["source", "points", "covariates", "first call", "repeat call", "complete rows"],
            [
                [
                    "local coarse pack",
                    num(loc.get("points")),
                    num(loc.get("covariates")),
                    f"{num(loc.get('cold_points_per_s'), 0)} points/s ({num(loc.get('cold_s'))} s)",
                    f"{num(loc.get('warm_points_per_s'), 0)} points/s ({num(loc.get('warm_s'))} s)",
                    f"{100 * loc.get('complete_fraction', float('nan')):.1f} %",
                ]
            ],
        ),
    ]
    ee = f.get("ee")
    if ee:
        rows = []
        for k, v in ee.items():
            if isinstance(v, Mapping) and (k.startswith("workers") or k == "auto_batch"):
                batch = v.get("batch_size", ee.get("batch"))
                label = "source's own" if k == "auto_batch" else "forced"
                rows.append(
                    [
                        num(v.get("workers", _int_suffix(k))),
                        f"{num(batch)} ({label})",
                        num(v.get("requests")),
                        num(v.get("max_in_flight")),
                        f"{num(v.get('seconds_s'))} s",
                        num(v.get("points_per_s"), 0),
                        _mb_per_s(v),
                    ]
                )
        speedup = next((v for k, v in ee.items() if k.endswith("_speedup")), None)
        auto = ee.get("auto_batch")
        lines += [
            "",
            f"Earth Engine path through the fake server (`tests/ee_fake_server.py`, own process) with "
            f"{num(ee.get('latency_s'))} s injected per request: {num(ee.get('points'))} points, "
            f"`{p.get('ee_catalog')}` "
            "catalog (its Earth Engine-buildable covariates). Not Earth Engine's real speed: it shows how much "
            "concurrent requests and bigger batches hide latency. MB/s: HTTP body bytes received from / sent to "
            "the fake server per second (MB = 10⁶ bytes).",
            "",
            *table(
                [
                    "concurrent requests",
                    "batch size",
                    "requests",
                    "max in flight",
                    "time",
                    "points/s",
                    "MB/s received / sent",
                ],
                rows,
            ),
        ]
        if speedup is not None:
            lines += ["", f"Concurrency speed-up (same batches): **{num(speedup)}×**."]
        if isinstance(auto, Mapping) and auto.get("speedup_vs_workers1") is not None:
            lines += [
                f"Concurrency plus the source's own batch size: **{num(auto['speedup_vs_workers1'])}×** "
                "over one request at a time with forced small batches."
            ]
    lines += ["", f"Peak RSS of the whole run: {num(f.get('peak_rss_mb'), 0)} MiB."]
    return lines


def map_section(r: Mapping[str, Any]) -> list[str]:
    f, p = r["figures"], r["params"]
    lines = ["## Mapping (`benchmarks/bench_map.py`)", ""]
    th = f.get("throughput")
    if th:
        lines += [
            f"Throughput on the Edgeroi AOI ({th.get('grid')}, {num(th.get('pixels'))} valid pixels; "
            f"{p.get('throughput', '')}):",
            "",
            *table(
                ["path", "time", "pixels/s"],
                [
                    ["`run_map` end to end (reads, mean, median + interval, COGs, quick-look)", f"{num(th.get('end_to_end_s'))} s", num(th.get("end_to_end_pixels_per_s"), 0)],
                    ["SoilNet inference only (`predict_layers`: mean, median, interval)", f"{num(th.get('inference_s'))} s", num(th.get("inference_pixels_per_s"), 0)],
                    ["scikit-learn RF `predict` (100 trees, same pixels)", f"{num(th.get('sklearn_rf_s'))} s", num(th.get("sklearn_rf_pixels_per_s"), 0)],
                ],
            ),
            "",
            f"End to end runs at {100 * (th.get('end_to_end_vs_inference') or math.nan):.0f} % of pure inference "
            f"speed; the RF predicts {num(th.get('rf_vs_inference'), 1)}× faster than the network ensemble with "
            "intervals (it computes one mean, no median or interval, here).",
            "",
        ]  # fmt: skip
    mem = f.get("memory")
    if mem:
        rows = [
            [
                k.removeprefix("side").replace("deg", "°"),
                num(v.get("grid_pixels")),
                num(v.get("tiles")),
                num(v.get("rss_after_plan_mb"), 0),
                num(v.get("peak_rss_mb"), 0),
                num(v.get("rss_end_mb"), 0),
                num(v.get("map_s"), 1),
                num(v.get("pixels_per_s"), 0),
            ]
            for k, v in mem.get("runs", {}).items()
        ]
        lines += [
            f"Peak RSS against AOI size: square AOIs centred at {p.get('center')} with `{Path(str(p.get('model'))).name}` "
            f"on {p.get('covariates')} at {num(p.get('scale_m'), 0)} m, {p.get('tile_size_memory')}-pixel tiles, each map "
            "in its own process" + (f" (measured {mem['measured']})" if mem.get("measured") else "") + ":",
            "",
            *table(
                [
                    "AOI side",
                    "grid pixels",
                    "tiles",
                    "RSS after planning (MiB)",
                    "peak RSS (MiB)",
                    "RSS at the end (MiB)",
                    "wall s",
                    "pixels/s",
                ],
                rows,
            ),
            "",
            f"Over {num(mem.get('pixels_max_over_min'), 0)}× more pixels, peak RSS grew {num(mem.get('rss_max_over_min'))}× "
            f"(log-log exponent {num(mem.get('rss_exponent'), 3)}; 0 = flat). {flatness(mem)}",
            "",
        ]
    dk = f.get("dask")
    if dk:
        w = p.get("dask_workers", 2)
        lines += [
            f"Dask: the {num(p.get('dask_side_deg'), 0)}° AOI ({num(dk.get('grid_pixels'))} pixels, {num(dk.get('tiles'))} "
            f"tiles of {p.get('tile_size_dask')}), serial against a LocalCluster of {w} single-threaded workers:",
            "",
            *table(
                ["run", "wall time (with cluster start-up)", "tile prediction"],
                [
                    ["serial", f"{num(dk.get('serial_s'))} s", f"{num(dk.get('serial_predict_s'))} s"],
                    [
                        f"dask, {w} workers",
                        f"{num(dk.get(f'dask{w}_s'))} s",
                        f"{num(dk.get(f'dask{w}_predict_s'))} s",
                    ],
                ],
            ),
            "",
            f"Speed-up {num(dk.get(f'dask{w}_speedup'))}× end to end (cluster start-up included), "
            f"{num(dk.get(f'dask{w}_predict_speedup'))}× on tile prediction. The ceiling is {w}× (one process per "
            "worker); the workers share the machine's cores with the client and with any other jobs, and each loads "
            "the model and opens the covariate pack itself.",
        ]
    return lines


def flatness(mem: Mapping[str, Any]) -> str:
    """One sentence judging the peak-RSS series: flat, or growing with the AOI (beyond one full tile when known:
    smaller AOIs have smaller tiles, so less to hold)."""
    full = mem.get("rss_exponent_full_tiles")
    exp = full if full is not None else mem.get("rss_exponent")
    if exp is None or not math.isfinite(exp):
        return ""
    head = ""
    if full is not None:
        ratio = num(mem.get("rss_max_over_min_full_tiles"))
        head = f"From the first AOI holding a full tile on, peak RSS changed {ratio}× (exponent {num(full, 3)}): "
    if exp <= FLAT_EXPONENT:
        if full is not None:
            return (
                head
                + "flat, bounded by the tile size, not the AOI (smaller AOIs have a smaller tile to hold)."
            )
        return "Memory is flat: it does not depend on the AOI size."
    runs = list(mem.get("runs", {}).values())
    same_tiles = [r for r in runs if r.get("tiles", 0) > 1]
    extra = ""
    if len(same_tiles) >= 2:
        a, b = same_tiles[0], same_tiles[-1]
        extra = (
            f" Between the multi-tile maps ({num(a.get('tiles'))} and {num(b.get('tiles'))} tiles of the same size) it "
            f"rose {num(b['peak_rss_mb'] - a['peak_rss_mb'], 0)} MiB."
        )
    return (
        f"{head}**Not flat** (exponent above {FLAT_EXPONENT}): peak memory grows with the AOI although tiles have a "
        f"fixed size.{extra}"
    )


def map_large_section(r: Mapping[str, Any]) -> list[str]:
    """One very large map: peak RSS against the 2 GiB budget, wall time, pixels/s and RSS per stage."""
    f, p = r["figures"], r["params"]
    b = p.get("bbox") or [math.nan] * 4
    budget = p.get("budget_mb", 2048)
    peak = f.get("peak_rss_mb")
    lines = [
        "## One large map (`benchmarks/bench_map_large.py`)",
        "",
        f"`run_map` end to end on a {num(f.get('width'))} × {num(f.get('height'))} grid ({num(f.get('grid_pixels'))} "
        f"pixels, {num(f.get('valid_pixels'))} predicted) over lon {b[0]:g}–{b[2]:g}°, lat {b[1]:g}–{b[3]:g}° in "
        f"{p.get('crs')} at {num(p.get('scale_m'), 0)} m, {num(f.get('tiles'))} tiles of {p.get('tile_size')} × "
        f"{p.get('tile_size')} pixels, {p.get('model')}, on the {p.get('covariates')}, in its own process:",
        "",
        *table(
            ["peak RSS (MiB)", "RSS after planning (MiB)", "wall", "pixels/s", "COGs written (MiB)"],
            [
                [
                    f"**{num(peak, 0)}**",
                    num(f.get("rss_after_plan_mb"), 0),
                    f"{num(f.get('map_s'), 0)} s",
                    num(f.get("pixels_per_s"), 0),
                    num(f.get("outputs_mb"), 0),
                ]
            ],
        ),
        "",
    ]
    stages = f.get("stages") or []
    if stages:
        rows = [
            [
                s.get("stage"),
                num(s["end_s"] - s["start_s"], 1),
                num(s.get("rss_start_mb"), 0),
                num(s.get("rss_max_mb"), 0),
            ]
            for s in stages
        ]
        lines += [
            *table(["stage", "seconds", "RSS at its start (MiB)", "highest RSS sampled (MiB)"], rows),
            "",
        ]
    if peak is not None:
        verdict = "within" if peak < budget else "**over**"
        lines.append(
            f"Peak RSS {num(peak, 0)} MiB is {verdict} the {num(budget)} MiB budget (the roadmap: a 20k × 20k "
            f"map in < 2 GB); RSS was sampled {num(f.get('rss_samples'))} times (`rss_series` in the JSON)."
        )
    return lines


# ------------------------------------------------------------------------------------------------ accuracy
def accuracy_rows(
    transfer: Mapping[str, Any],
) -> tuple[list[list[str]], dict[str, list[tuple[float, float]]]]:
    """Per setting × size: fine-tuned and global MAE/CCC and their % change against rf, qrf and scratch."""
    rows: list[list[str]] = []
    pooled: dict[str, list[tuple[float, float]]] = {}
    for name, res in transfer.get("settings", {}).items():
        title = _get(res, "setting", "title") or name
        by_size: dict[str, dict[str, Mapping[str, Any]]] = {}
        for rec in res.get("summary", []):
            by_size.setdefault(str(rec.get("size")), {})[str(rec.get("method"))] = rec
        for size, methods in by_size.items():
            for method in ("finetuned", "global"):
                m = methods.get(method)
                if m is None:
                    continue
                cells = [
                    title if method == "finetuned" else "",
                    size,
                    _label(method),
                    num(m.get("mae")),
                    num(m.get("ccc")),
                ]
                for base in ("rf", "qrf", "scratch"):
                    b = methods.get(base)
                    if b is None:
                        cells.append("–")
                        continue
                    d_mae, d_ccc = (
                        change_pct(m.get("mae"), b.get("mae")),
                        change_pct(m.get("ccc"), b.get("ccc")),
                    )
                    cells.append(f"{pct(d_mae)} / {pct(d_ccc)}")
                    if math.isfinite(d_mae) and math.isfinite(d_ccc):
                        pooled.setdefault(f"{method} vs {base}", []).append((d_mae, d_ccc))
                rows.append(cells)
    return rows, pooled


def _label(method: str) -> str:
    return "global, no fine-tuning" if method == "global" else method


def change_pct(value: Any, base: Any) -> float:
    """``100 · (value − base) / |base|``; NaN when either is missing or ``base`` is 0."""
    try:
        v, b = float(value), float(base)
    except (TypeError, ValueError):
        return math.nan
    if not (math.isfinite(v) and math.isfinite(b)) or b == 0:
        return math.nan
    return 100.0 * (v - b) / abs(b)


def accuracy_section(transfer: Mapping[str, Any] | None) -> list[str]:
    lines = ["## Accuracy (summary)", ""]
    if transfer is None:
        return lines + [
            f"`benchmarks/results/{TRANSFER_FILE}` is not there yet; `benchmarks/transfer_experiment.py` writes it "
            "and [docs/results.md](results.md) explains the experiment."
        ]
    rows, pooled = accuracy_rows(transfer)
    if not rows:
        return lines + [
            f"`{TRANSFER_FILE}` holds no per-size summary this report can read; see [docs/results.md](results.md)."
        ]
    meta = transfer.get("meta", {})
    lines += [
        f"From `benchmarks/results/{TRANSFER_FILE}` ({meta.get('date', 'date unknown')}; "
        f"{meta.get('machine', '')}). Test-fold MAE (g/kg) and CCC, and each model's change against the regional-only "
        "baselines as *MAE change / CCC change* (negative MAE and positive CCC changes are improvements). "
        "Methods, folds and intervals: [docs/results.md](results.md).",
        "",
        *table(
            ["setting", "n", "model", "MAE", "CCC", "vs RF", "vs QRF", "vs scratch"],
            rows,
        ),
        "",
        "Averaged over settings and sizes, against the paper's average for fine-tuning over regional-only models "
        f"(Zhang et al. 2025: MAE {PAPER_MAE_PCT:+.2f} %, CCC {PAPER_CCC_PCT:+.2f} %):",
        "",
    ]
    avg_rows = []
    for key in sorted(pooled, key=lambda k: (not k.startswith("finetuned"), k)):
        vals = pooled[key]
        avg_rows.append(
            [
                key,
                str(len(vals)),
                pct(sum(v[0] for v in vals) / len(vals)),
                pct(sum(v[1] for v in vals) / len(vals)),
            ]
        )
    avg_rows.append(
        ["paper: fine-tuned vs regional-only", "–", f"{PAPER_MAE_PCT:+.2f} %", f"{PAPER_CCC_PCT:+.2f} %"]
    )
    lines += table(["comparison", "cells", "mean MAE change", "mean CCC change"], avg_rows)
    lines += [
        "",
        "Percent changes of CCC are relative to the baseline's CCC, so where that is near 0 (e.g. arid regions with "
        "CCC ≈ 0.05) they are large and unstable and dominate the mean; read the MAE column and the per-size "
        "table first.",
    ]
    return lines


# ------------------------------------------------------------------------------------------------ ablation
def _pm(mean: Any, se: Any, nd: int = 1, unit: str = " %") -> str:
    """``+1.2 ± 0.8 %`` (bold when more than two standard errors from 0); ``–`` when missing."""
    if mean is None or not math.isfinite(mean):
        return "–"
    text = f"{mean:+.{nd}f}" + (f" ± {se:.{nd}f}" if se is not None and math.isfinite(se) else "") + unit
    return f"**{text}**" if _resolved(mean, se) else text


def _resolved(mean: Any, se: Any) -> bool:
    return (
        mean is not None
        and se is not None
        and math.isfinite(mean)
        and math.isfinite(se)
        and abs(mean) > 2 * se
    )


def _delta_mae(cell: Mapping[str, Any]) -> str:
    """ΔMAE of a cell; "same points" where the arm shares its comparator's predictions (only intervals differ)."""
    m, se = cell.get("mae_change_pct"), cell.get("mae_change_pct_se")
    if m == 0 and se == 0:
        return "same points"
    return _pm(m, se)


def _signed(v: Any, nd: int = 3) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:+.{nd}f}"


def ablation_reading(f: Mapping[str, Any]) -> list[str]:
    """Two to four sentences reading the ablation: what is resolved, what is noise, intervals, what was skipped."""
    arms = f.get("arms", {})
    ran = {k: a for k, a in arms.items() if a.get("status") == "ran" and a.get("versus") and a.get("pooled")}

    def what(name: str, a: Mapping[str, Any]) -> str:
        return f"`{name}` ({a.get('ingredient')} {a.get('toggle')})"

    def change(a: Mapping[str, Any]) -> tuple[float, float]:
        p = a["pooled"]
        return p.get("mae_change_pct", math.nan), p.get("mae_change_pct_se", math.nan)

    resolved = sorted(
        ((k, a) for k, a in ran.items() if _resolved(*change(a))), key=lambda kv: -abs(change(kv[1])[0])
    )
    hits = [(k, a) for k, a in resolved if abs(change(a)[0]) >= NEGLIGIBLE_MAE_PCT]
    small = [k for k, a in resolved if abs(change(a)[0]) < NEGLIGIBLE_MAE_PCT]
    # arms sharing their comparator's points (only the calibration differs) say nothing about MAE
    noise = [k for k, a in ran.items() if not _resolved(*change(a)) and change(a)[1] != 0]
    draws = max((a["pooled"].get("draws", 0) for a in ran.values()), default=0)

    def listed(names: Sequence[str]) -> str:
        return ", ".join(f"`{k}` ({_pm(*change(ran[k])).replace('**', '')})" for k in names)

    head = f"With {draws} paired draws per arm, "
    if hits:
        text = (
            head
            + f"MAE changes beyond two standard errors and of at least {NEGLIGIBLE_MAE_PCT:g} %: "
            + "; ".join(
                f"{what(k, a)} {_pm(*change(a)).replace('**', '')} vs `{a['versus']}`" for k, a in hits
            )
        )
    else:
        text = head + (
            f"no arm changes MAE by at least {NEGLIGIBLE_MAE_PCT:g} % beyond two standard errors of its comparator"
        )
    if small:
        text += f" (resolved but under {NEGLIGIBLE_MAE_PCT:g} %, negligible: {listed(small)})"
    out = [text + "."]
    if noise:
        out.append(f"Within noise (|ΔMAE| ≤ 2 SE, not shown to matter either way here): {listed(noise)}.")
    picp = {k: _get(a, "pooled", "picp90") for k, a in arms.items() if a.get("status") == "ran"}
    if picp.get("reference") is not None and picp.get("no-recalibration") is not None:
        text = (
            f"Coverage of the 90 % intervals after fine-tuning: {picp['reference']:.2f} re-calibrated on the "
            f"region, {picp['no-recalibration']:.2f} with the pretrained model's global calibration"
        )
        if picp.get("no-finetuning") is not None and picp.get("pretrained-as-is") is not None:
            text += (
                f"; without fine-tuning {picp['no-finetuning']:.2f} re-calibrated and "
                f"{picp['pretrained-as-is']:.2f} with the global calibration"
            )
        out.append(text + ".")
    # arms run in some regions only show it in the tables; the reading names those that did not run at all
    skipped = {k: a.get("skipped") for k, a in arms.items() if a.get("skipped") and a.get("status") != "ran"}
    if skipped:
        out.append(
            "Not run: "
            + "; ".join(
                f"`{k}` in {', '.join(f'{r} ({why})' for r, why in v.items())}" for k, v in skipped.items()
            )
            + "."
        )
    return out


def ablation_section(r: Mapping[str, Any]) -> list[str]:
    f, p = r["figures"], r["params"]
    arms = f.get("arms", {})
    regions = f.get("regions", {})
    pre = f.get("pretraining", {})
    sizes = p.get("sizes", [])
    draws = p.get("folds", 0) * p.get("repeats", 0)
    lines = [
        "## Ablations (`benchmarks/ablation.py`)",
        "",
        "Each arm changes one ingredient of the transfer recipe and is compared with the arm named under *vs* "
        "(mostly `reference`: plain fine-tuning of the pretrained ensemble, Fourier location features, one pixel, "
        "log1p target, intervals re-calibrated on the region). Every pretrained variant is trained in the run on "
        f"the same held-out global samples with the same seed and budget ({p.get('members')} members, ≤ "
        f"{p.get('pretrain_epochs')} epochs); fine-tuning uses "
        + ("each strategy's defaults" if p.get("epochs") is None else f"≤ {p.get('epochs')} epochs")
        + ". Spatial-block CV in "
        + "; ".join(
            f"{v.get('title', k)}: {num(v.get('n'))} samples, {num(v.get('block_km'), 0)} km blocks"
            for k, v in regions.items()
        )
        + f". {p.get('folds')} folds × {p.get('repeats')} draw(s) per size, n = "
        + ", ".join(str(s) for s in sizes)
        + f" ({draws} paired draws per region and size). All arms are fitted on the same draws and scored (by their "
        "medians, as in `geesoil evaluate`) on the same test folds, so ΔMAE (relative, per draw) is paired: mean ± standard error, **bold** when beyond two "
        "standard errors. ΔCCC and ΔPICP90 are absolute differences.",
        "",
    ]
    rows = []
    for name, a in arms.items():
        pooled = a.get("pooled")
        if a.get("status") != "ran" or not pooled:
            reason = "; ".join(f"{k}: {v}" for k, v in (a.get("skipped") or {}).items())
            rows.append(
                [f"`{name}`", a.get("ingredient", ""), a.get("toggle", ""), "", f"skipped ({reason})"]
            )
            rows[-1] += [""] * 6
            continue
        vs = a.get("versus")
        rows.append(
            [
                f"`{name}`",
                a.get("ingredient", ""),
                a.get("toggle", ""),
                f"`{vs}`" if vs else "",
                num(pooled.get("mae"))
                + (
                    f" ({num(pooled.get('mae_versus'))})"
                    if vs and pooled.get("mae_versus") is not None
                    else ""
                ),
                _delta_mae(pooled) if vs else "",
                num(pooled.get("ccc"), 3),
                _signed(pooled.get("ccc_change")) if vs else "",
                num(pooled.get("picp90"), 3),
                _signed(pooled.get("picp90_change")) if vs else "",
                num(pooled.get("draws")),
            ]
        )
    lines += table(
        [
            "arm",
            "ingredient",
            "toggle",
            "vs",
            "MAE, g/kg (vs on the same draws)",
            "ΔMAE",
            "CCC",
            "ΔCCC",
            "PICP90",
            "ΔPICP90",
            "draws",
        ],
        rows,
    )
    cells = [(reg, f"n{s}") for reg in regions for s in sizes]
    per = []
    for name, a in arms.items():
        if a.get("status") != "ran":
            continue
        row = [f"`{name}`"]
        for reg, key in cells:
            c = _get(a, "cells", reg, key)
            if not c:
                row.append("–")
                continue
            d = c.get("mae_change_pct")
            same = d == 0 and c.get("mae_change_pct_se") == 0
            note = "" if not a.get("versus") or d is None else " (same points)" if same else f" ({pct(d)})"
            row.append(num(c.get("mae")) + note)
        per.append(row)
    lines += [
        "",
        "MAE (g/kg) per region and training size, with the change against the arm's comparator:",
        "",
        *table(
            [
                "arm",
                *[f"{reg.capitalize()}, n = {key[1:]}" for reg, key in cells],
            ],
            per,
        ),
        "",
        "Pretrained variants (global validation on 100 km blocks): "
        + "; ".join(
            f"`{k}` MAE {num(v.get('validation_mae'))} g/kg in {num(v.get('pretrain_s'), 0)} s"
            for k, v in pre.items()
        )
        + f". Whole run: {num(f.get('wall_s'), 0)} s.",
        "",
        "**Reading.** " + " ".join(ablation_reading(f)),
    ]
    return lines


# ------------------------------------------------------------------------------------------------ page
#: sections rendered after the accuracy summary (accuracy benchmarks); their machines join the machine table
ACCURACY_SECTIONS = {"ablation": ablation_section}
SECTIONS = {
    "pretrain": pretrain_section,
    "finetune": finetune_section,
    "extract": extract_section,
    "map": map_section,
    "map_large": map_large_section,
}


def _ordered(results: Mapping[str, Any]) -> list[str]:
    return [n for n in ORDER if n in results] + sorted(n for n in results if n not in ORDER)


HOW_TO = [
    "## Reproduce",
    "",
    "```",
    "make bench                       # every benchmark (< 15 min on 2 cores), then this page",
    "make bench-compare               # a fresh run into build/bench-fresh, compared with the committed JSON",
    "python benchmarks/bench_pretrain.py --full             # 5 members, every scale to convergence (long)",
    "python benchmarks/bench_pretrain.py --device cuda      # on a GPU (also bench_finetune.py --device cuda)",
    "python benchmarks/bench_map.py --full                  # the memory series up to a 16° AOI",
    "python benchmarks/bench_map_large.py                   # one 20000 × 20000-pixel map (20-30 min)",
    "python benchmarks/ablation.py --full                   # ablations with 3 draws per fold, Niger too",
    "python benchmarks/report.py                            # this page from benchmarks/results/*.json",
    "```",
    "",
    "Each benchmark prints one JSON object (name, params, machine, figures) and saves it to "
    "`benchmarks/results/<name>.json`. Figure names carry their direction: `*_per_s` and `*_speedup` higher is "
    "better, `*_s` and `*_mb` lower is better; `compare.py` flags a change of more than 20 % in the worse direction.",
    "",
]


def render(results: Mapping[str, Mapping[str, Any]], transfer: Mapping[str, Any] | None = None) -> str:
    """The whole page from benchmark results (name → result) and the optional transfer experiment."""
    lines = [
        "# Benchmarks: speed, memory and accuracy",
        "",
        "Generated by `benchmarks/report.py` from `benchmarks/results/*.json`; do not edit by hand. Reproduce with "
        "`make bench` (all speed/memory benchmarks, then this page) and check a change with `make bench-compare` "
        "(fails when a figure is more than 20 % worse than the committed JSON).",
        "",
    ]
    speed = {k: v for k, v in results.items() if k in SECTIONS}
    measured = {k: v for k, v in results.items() if k in SECTIONS or k in ACCURACY_SECTIONS}
    if measured:
        lines += machine_section(measured) + [""]
    for name in _ordered(speed):
        try:
            lines += SECTIONS[name](speed[name]) + [""]
        except (KeyError, TypeError, AttributeError) as exc:
            lines += [f"## {name}", "", f"(result not readable by this report: {exc!r})", ""]
    if not speed:
        lines += ["No speed/memory results yet: run `make bench`.", ""]
    lines += accuracy_section(transfer) + [""]
    for name, section in ACCURACY_SECTIONS.items():
        if name in results:
            try:
                lines += section(results[name]) + [""]
            except (KeyError, TypeError, AttributeError) as exc:
                lines += [f"## {name}", "", f"(result not readable by this report: {exc!r})", ""]
    lines += HOW_TO
    return "\n".join(lines)


def load_transfer(folder: Path) -> dict[str, Any] | None:
    import json

    path = folder / TRANSFER_FILE
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def write_report(results_dir: Path = RESULTS_DIR, output: Path = DOC) -> Path:
    results = {k: v for k, v in load_results(results_dir).items() if k in SECTIONS or k in ACCURACY_SECTIONS}
    text = render(results, load_transfer(Path(results_dir)))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    return output


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=RESULTS_DIR)
    ap.add_argument("--output", type=Path, default=DOC)
    args = ap.parse_args(argv)
    print(write_report(args.results, args.output))


if __name__ == "__main__":
    main()
