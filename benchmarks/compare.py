"""Compare fresh benchmark results with the committed ones; flag every figure more than 20 % worse (exit status 1).

Usage: ``python benchmarks/compare.py --fresh DIR [--baseline benchmarks/results] [--threshold 0.2]``.

Figures are compared by direction (see ``benchmarks/common.py``): ``*_per_s``/``*_speedup`` must not drop by more
than the threshold, ``*_s``/``*_mb`` must not rise by more than it; informational figures are listed but never flag.
Times where both runs took under ``--min-seconds`` are too noisy to judge and are skipped. A different CPU model or
core count between the two runs is reported as a warning: absolute times from different machines do not compare.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS_DIR, load_results  # noqa: E402

THRESHOLD = 0.20
#: times under this (both runs) are scheduler noise on a shared machine, not a regression signal
MIN_SECONDS = 0.25


def flatten(figures: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of nested figures as ``{"a.b.c": value}`` (lists, strings and booleans are left out)."""
    out: dict[str, float] = {}
    for k, v in figures.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        elif isinstance(v, int | float) and not isinstance(v, bool) and v is not None and math.isfinite(v):
            out[key] = float(v)
    return out


def direction(key: str, directions: Mapping[str, str] | None = None) -> str:
    """``higher``, ``lower`` or ``info`` for a flattened figure name (explicit ``directions`` first)."""
    if directions and key in directions:
        return directions[key]
    leaf = key.rsplit(".", 1)[-1]
    if leaf.endswith("_per_s") or leaf.endswith("_speedup") or leaf == "speedup":
        return "higher"
    if leaf.endswith("_s") or leaf.endswith("_mb"):
        return "lower"
    return "info"


@dataclass(frozen=True)
class Row:
    benchmark: str
    figure: str
    baseline: float
    fresh: float
    direction: str
    #: relative change in the "worse" direction: +0.25 = 25 % worse, −0.1 = 10 % better (0 for info)
    worse_by: float
    status: str  # "regression", "better", "ok", "info", "noise"


def compare_results(
    baseline: Mapping[str, Any],
    fresh: Mapping[str, Any],
    *,
    threshold: float = THRESHOLD,
    min_seconds: float = MIN_SECONDS,
) -> list[Row]:
    """Compare two results of the same benchmark figure by figure (figures in only one of them are skipped)."""
    name = str(fresh.get("name", baseline.get("name", "?")))
    directions = {**baseline.get("directions", {}), **fresh.get("directions", {})}
    old, new = flatten(baseline.get("figures", {})), flatten(fresh.get("figures", {}))
    rows = []
    for key in sorted(old.keys() & new.keys()):
        a, b = old[key], new[key]
        d = direction(key, directions)
        if d not in ("higher", "lower"):
            rows.append(Row(name, key, a, b, "info", 0.0, "info"))
            continue
        if d == "lower" and key.endswith("_s") and max(a, b) < min_seconds:
            rows.append(Row(name, key, a, b, d, 0.0, "noise"))
            continue
        if a == 0:
            worse = 0.0 if b == 0 else (math.inf if (b > 0) == (d == "lower") else -math.inf)
        else:
            worse = (b - a) / abs(a) if d == "lower" else (a - b) / abs(a)
        status = "regression" if worse > threshold else "better" if worse < -threshold else "ok"
        rows.append(Row(name, key, a, b, d, worse, status))
    return rows


def machine_warnings(baseline: Mapping[str, Any], fresh: Mapping[str, Any]) -> list[str]:
    """What differs between the two runs' machines (CPU model, cores, device) and parameters."""
    out = []
    m0, m1 = baseline.get("machine", {}), fresh.get("machine", {})
    for k in ("cpu_model", "cores", "device"):
        if m0.get(k) != m1.get(k):
            out.append(
                f"{fresh.get('name')}: {k} differs ({m0.get(k)!r} → {m1.get(k)!r}); absolute times do not compare"
            )
    p0, p1 = baseline.get("params", {}), fresh.get("params", {})
    changed = sorted(k for k in p0.keys() | p1.keys() if p0.get(k) != p1.get(k))
    if changed:
        out.append(f"{fresh.get('name')}: parameters differ ({', '.join(changed)}); figures may not compare")
    return out


def compare_dirs(
    baseline_dir: str | Path,
    fresh_dir: str | Path,
    *,
    threshold: float = THRESHOLD,
    min_seconds: float = MIN_SECONDS,
) -> tuple[list[Row], list[str]]:
    """Every benchmark present in both folders: the comparison rows and the warnings."""
    base, fresh = load_results(baseline_dir), load_results(fresh_dir)
    rows: list[Row] = []
    warnings: list[str] = []
    if not fresh:
        warnings.append(f"no benchmark results in {fresh_dir}")
    for name in sorted(fresh):
        if name not in base:
            warnings.append(f"{name}: no committed result in {baseline_dir} to compare with")
            continue
        warnings += machine_warnings(base[name], fresh[name])
        rows += compare_results(base[name], fresh[name], threshold=threshold, min_seconds=min_seconds)
    return rows, warnings


def format_rows(rows: list[Row], *, show_all: bool = False) -> str:
    lines = [
        f"{'status':<10} {'benchmark':<9} {'figure':<48} {'committed':>12} {'fresh':>12} {'worse by':>9}"
    ]
    for r in rows:
        if not show_all and r.status in ("ok", "info", "noise"):
            continue
        worse = "" if r.status in ("info", "noise") else f"{100 * r.worse_by:+.0f} %"
        lines.append(
            f"{r.status:<10} {r.benchmark:<9} {r.figure:<48} {r.baseline:>12.4g} {r.fresh:>12.4g} {worse:>9}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fresh", type=Path, required=True, help="folder of a fresh run (run_all.py --out-dir)")
    ap.add_argument("--baseline", type=Path, default=RESULTS_DIR, help="folder of the committed results")
    ap.add_argument(
        "--threshold", type=float, default=THRESHOLD, help="relative change that counts (0.2 = 20 %%)"
    )
    ap.add_argument("--min-seconds", type=float, default=MIN_SECONDS)
    ap.add_argument("--all", action="store_true", help="list every figure, not only regressions/improvements")
    args = ap.parse_args(argv)
    rows, warnings = compare_dirs(
        args.baseline, args.fresh, threshold=args.threshold, min_seconds=args.min_seconds
    )
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(format_rows(rows, show_all=args.all))
    bad = [r for r in rows if r.status == "regression"]
    judged = sum(r.status in ("regression", "better", "ok") for r in rows)
    print(
        f"{len(bad)} regression(s) > {100 * args.threshold:.0f} % among {judged} judged figures "
        f"({sum(r.status == 'better' for r in rows)} better)"
    )
    return 1 if bad or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
