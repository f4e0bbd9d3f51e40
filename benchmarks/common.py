"""Shared benchmark plumbing: machine description, result JSON, timers, peak RSS of child processes, scaling fits.

Every benchmark builds one result with :func:`make_result` — ``{name, params, machine, figures, directions,
notes}`` — and :func:`save_result` prints it as one JSON line on stdout and writes
``benchmarks/results/<name>.json``. Figure names carry their direction (``compare.py`` relies on it):

- ``*_per_s`` and ``*_speedup``: higher is better;
- ``*_s`` (seconds) and ``*_mb`` (peak resident memory, MiB): lower is better;
- anything else (counts, ratios, exponents) is informational unless ``directions`` names it.

Measurements that need their own peak RSS run in a child process (:func:`run_child`). The child reports its own
``VmHWM`` (peak resident set of its address space, ``/proc/self/status``) as it finishes. Not ``ru_maxrss`` from
``wait4``/``RUSAGE_CHILDREN``: Linux carries the *parent's* peak RSS into a child across ``fork``/``vfork`` + ``exec``,
so a child started from a 1 GB parent would report at least 1 GB. ``ru_maxrss`` is the fallback off Linux.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
#: other processes using more CPU than this (cores) while a benchmark starts mark it as "measured while busy"
BUSY_CORES = 0.25

log = logging.getLogger("benchmarks")


def shared_data() -> Path:
    """``$GEESOIL_SHARED_DATA`` or ``../shared/data`` beside the repository (the real-data folder)."""
    return Path(os.environ.get("GEESOIL_SHARED_DATA", REPO.parent / "shared" / "data"))


# ------------------------------------------------------------------------------------------------ machine
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ram_gb() -> float | None:
    """Total physical memory in GiB (``/proc/meminfo``, else ``sysconf``), or None when unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def other_cpu_load(interval_s: float = 1.0) -> float | None:
    """Cores used by processes outside this process tree over ``interval_s`` (None without psutil)."""
    try:
        import psutil
    except ModuleNotFoundError:
        return None
    me = psutil.Process()
    mine = {me.pid, *(p.pid for p in me.children(recursive=True))}
    mine |= {p.pid for p in me.parents()}
    procs = []
    for p in psutil.process_iter():
        if p.pid in mine:
            continue
        try:
            p.cpu_percent(None)
            procs.append(p)
        except (psutil.Error, OSError):
            continue
    time.sleep(interval_s)
    total = 0.0
    for p in procs:
        try:
            total += p.cpu_percent(None)
        except (psutil.Error, OSError):
            continue
    return round(total / 100.0, 2)


def device_name(device: str = "cpu") -> str:
    """``cpu`` or the CUDA device's name for ``device`` (``auto`` picks CUDA when torch sees one)."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(torch.device(device))})"
    return "cpu"


def machine_info(device: str = "cpu", *, measure_load: bool = True) -> dict[str, Any]:
    """Where and when a benchmark ran: CPU model, cores, RAM, torch version, device, UTC date, load."""
    import torch

    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "ram_gb": ram_gb(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": device_name(device),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    if hasattr(os, "getloadavg"):
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    if measure_load:
        info["other_cpu_cores"] = other_cpu_load()
    return info


# ------------------------------------------------------------------------------------------------ results
def make_result(
    name: str,
    params: Mapping[str, Any],
    figures: Mapping[str, Any],
    *,
    machine: Mapping[str, Any] | None = None,
    directions: Mapping[str, str] | None = None,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """One benchmark result; ``machine`` defaults to :func:`machine_info` now (take it at the start instead)."""
    return {
        "name": name,
        "params": dict(params),
        "machine": dict(machine) if machine is not None else machine_info(),
        "figures": _plain(dict(figures)),
        "directions": dict(directions or {}),
        "notes": list(notes),
    }


def save_result(result: Mapping[str, Any], out_dir: str | Path | None = RESULTS_DIR) -> Path | None:
    """Print ``result`` as one JSON line and write ``<out_dir>/<name>.json`` (``out_dir=None``: print only)."""
    text = json.dumps(_plain(dict(result)))
    print(text, flush=True)
    if out_dir is None:
        return None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{result['name']}.json"
    path.write_text(json.dumps(json.loads(text), indent=1) + "\n")
    return path


def load_results(folder: str | Path) -> dict[str, dict[str, Any]]:
    """Every ``<name>.json`` benchmark result in ``folder`` (files without ``figures`` are skipped)."""
    out = {}
    for path in sorted(Path(folder).glob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("skipping %s: %s", path, exc)
            continue
        if isinstance(doc, dict) and "figures" in doc and "name" in doc:
            out[doc["name"]] = doc
    return out


def _plain(x: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, non-finite floats to None, floats rounded to 6 significant digits."""
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float):
        if not math.isfinite(x):
            return None
        return float(f"{x:.6g}")
    return x


def add_output_args(parser: Any) -> None:
    """``--out-dir DIR`` (default ``benchmarks/results``) and ``--no-save`` (print only)."""
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="where <name>.json is written")
    parser.add_argument("--no-save", action="store_true", help="print the JSON only")


def out_dir_of(args: Any) -> Path | None:
    return None if getattr(args, "no_save", False) else args.out_dir


@contextmanager
def quiet_geesoil(level: int = logging.ERROR) -> Iterator[None]:
    """Silence geesoil's expected warnings (missing covariates at coasts...) while measuring; restores the level."""
    logger = logging.getLogger("geesoil")
    old = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(old)


# ------------------------------------------------------------------------------------------------ timing
@dataclass
class Stopwatch:
    """``with timer() as t: ...`` then ``t.s`` (seconds, wall clock)."""

    start: float = 0.0
    s: float = float("nan")


@contextmanager
def timer() -> Iterator[Stopwatch]:
    sw = Stopwatch(time.perf_counter())
    try:
        yield sw
    finally:
        sw.s = time.perf_counter() - sw.start


def maxrss_mb(ru_maxrss: int) -> float:
    """``ru_maxrss`` in MiB (kilobytes on Linux, bytes on macOS)."""
    return ru_maxrss / 2**20 if sys.platform == "darwin" else ru_maxrss / 1024


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (MiB)."""
    return maxrss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


@dataclass(frozen=True)
class ChildResult:
    """What a function run in a child process returned, with the child's wall time and peak RSS."""

    value: Any
    wall_s: float
    peak_rss_mb: float


class ChildError(RuntimeError):
    """A benchmark child process failed (its stderr was passed through)."""


def run_child(
    func: str, kwargs: Mapping[str, Any] | None = None, *, timeout_s: float | None = None
) -> ChildResult:
    """Run ``func`` (``"module:function"``, importable from ``benchmarks/``) with JSON ``kwargs`` in a fresh Python.

    The function's return value must be JSON-serialisable. ``peak_rss_mb`` is the child's own peak (``VmHWM``;
    see the module docstring), including the interpreter and imports; ``wall_s`` includes start-up.
    """
    with tempfile.TemporaryDirectory(prefix="geesoil-bench-") as tmp:
        out = Path(tmp) / "value.json"
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            func,
            json.dumps(kwargs or {}),
            str(out),
        ]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(BENCH_DIR), os.environ.get("PYTHONPATH", "")]),
        }
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env=env)
        deadline = None if timeout_s is None else t0 + timeout_s
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.perf_counter() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                proc.returncode = -9
                raise ChildError(f"{func} ran longer than {timeout_s} s")
            time.sleep(0.02)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; keep Popen from waiting again
        if proc.returncode != 0:
            raise ChildError(f"{func}({kwargs}) failed with exit code {proc.returncode}")
        doc = json.loads(out.read_text())
    peak = doc["vm_hwm_mb"] if doc.get("vm_hwm_mb") is not None else maxrss_mb(usage.ru_maxrss)
    return ChildResult(doc["value"], wall, peak)


def _proc_status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def vm_hwm_mb() -> float | None:
    """This process's peak resident set since its last ``exec`` (``VmHWM``, Linux), or None elsewhere."""
    return _proc_status_mb("VmHWM")


def vm_rss_mb() -> float | None:
    """This process's current resident set (``VmRSS``, Linux), or None elsewhere."""
    return _proc_status_mb("VmRSS")


def _child_main(func: str, kwargs_json: str, out: str) -> None:
    import importlib

    module, name = func.split(":")
    sys.path.insert(0, str(BENCH_DIR))
    fn = getattr(importlib.import_module(module), name)
    value = fn(**json.loads(kwargs_json))
    Path(out).write_text(json.dumps({"value": _plain(value), "vm_hwm_mb": vm_hwm_mb()}))


# ------------------------------------------------------------------------------------------------ analysis
def scaling_exponent(sizes: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares slope of ``log(value)`` on ``log(size)``: 1 = linear, 0 = flat, 2 = quadratic."""
    x = np.log(np.asarray(sizes, dtype=float))
    y = np.log(np.asarray(values, dtype=float))
    if x.size < 2 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("a scaling exponent needs at least two positive (size, value) pairs")
    return float(np.polyfit(x, y, 1)[0])


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "--child":
    _child_main(*sys.argv[2:])
