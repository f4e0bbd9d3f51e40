"""Run every benchmark (pretrain, finetune, extract, map; the ablations), save their JSON, then regenerate the report.

Usage: ``python benchmarks/run_all.py [--out-dir DIR] [--only map,extract] [--full] [--no-report] [--quick]
[--large]``.

Each benchmark runs in its own Python process (one at a time, so no two compete for the CPU) and writes
``<out-dir>/<name>.json``; a failing benchmark is reported and the others still run (exit status 1 at the end).
The default budget fits in 15 minutes on 2 cores; ``--full`` passes ``--full`` to the pretraining benchmark (5
members, every scale to convergence: long), the mapping benchmark (AOIs up to 16°) and the ablations (3 draws per
fold and size, a third region). ``--quick`` uses tiny
parameters (a smoke run of the whole pipeline, ~2 minutes). ``--large`` adds ``bench_map_large.py`` (one
20000 × 20000-pixel map, 20-30 minutes; 2000 × 2000 with ``--quick``).
Unless ``--no-report``, ``docs/benchmarks.md`` is regenerated from ``--out-dir`` (only when it is the default
``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH_DIR, RESULTS_DIR  # noqa: E402

#: benchmark name → (script, default arguments, --quick arguments)
BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    "pretrain": ("bench_pretrain.py", [], ["--max-epochs", "3", "--scales", "1,2"]),
    "finetune": ("bench_finetune.py", [], ["--sizes", "50,100", "--strategies", "finetuned,regional-branch"]),
    "extract": ("bench_extract.py", [], ["--points", "5000", "--ee-points", "500", "--ee-latency", "0.2"]),
    "map": ("bench_map.py", [], ["--sides", "0.5,1", "--dask-side", "0", "--skip-throughput"]),
    "ablation": ("ablation.py", [], ["--quick"]),
}
#: benchmarks that take ``--full``
FULL = ("pretrain", "map", "ablation")
#: run only when asked (``--large`` or ``--only``): one 20000 × 20000-pixel map takes 20-30 minutes on 2 cores
LARGE: dict[str, tuple[str, list[str], list[str]]] = {
    "map_large": ("bench_map_large.py", [], ["--pixels", "2000"]),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    ap.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated benchmark names")
    ap.add_argument(
        "--full", action="store_true", help=f"the full budgets of {', '.join(FULL)} (much longer)"
    )
    ap.add_argument("--quick", action="store_true", help="tiny parameters: a smoke run")
    ap.add_argument(
        "--large", action="store_true", help="also the 20k x 20k map (bench_map_large.py, ~25 min)"
    )
    ap.add_argument("--no-report", action="store_true", help="do not regenerate docs/benchmarks.md")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    if args.large:
        names += [n for n in LARGE if n not in names]
    every = {**BENCHMARKS, **LARGE}
    unknown = [n for n in names if n not in every]
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(every)}")
    failed = []
    t_all = time.perf_counter()
    for name in names:
        script, default, quick = every[name]
        extra = quick if args.quick else default
        if args.full and name in FULL:
            extra = [*extra, "--full"]
        cmd = [sys.executable, str(BENCH_DIR / script), *extra, "--out-dir", str(args.out_dir)]
        print(f"[run_all] {name}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd, stdout=subprocess.DEVNULL)
        print(
            f"[run_all] {name}: exit {rc} after {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True
        )
        if rc != 0:
            failed.append(name)
    print(f"[run_all] all done in {time.perf_counter() - t_all:.0f} s", file=sys.stderr)
    if not args.no_report and args.out_dir.resolve() == RESULTS_DIR.resolve():
        import report

        path = report.write_report(RESULTS_DIR)
        print(f"[run_all] wrote {path}", file=sys.stderr)
    if failed:
        print(f"[run_all] failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
