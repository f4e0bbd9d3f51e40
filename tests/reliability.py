"""Hardening-test bookkeeping: count inputs tried and faults injected, write ``docs/reliability.md`` at session end.

The fuzz, fault and secret tests call :func:`tried` / :func:`injected`; ``tests/conftest.py`` imports
:func:`pytest_sessionfinish` so pytest runs it. The report is written only when every hardening module ran at
least one test in the session (a partial run would under-count), so ``pytest tests/test_fuzz_samples.py`` alone
leaves the committed report as it is.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections import Counter
from pathlib import Path

import pytest

REPORT = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"
#: The modules whose counts make up the report (file stems under tests/).
MODULES = ("test_fuzz_samples", "test_fuzz_inputs", "test_faults", "test_secrets")

_lock = threading.Lock()
INPUTS: Counter[str] = Counter()
FAULTS: Counter[str] = Counter()
_ran: set[str] = set()
_outcomes: Counter[str] = Counter()

#: Failures the hardening tests found, each fixed in its own commit: (input that failed, what happened, fix).
FIXED: tuple[tuple[str, str, str], ...] = (
    (
        "CSV `lon,lat,oc_gkg` with a trailing separator on each row (`150,-30,5,`)",
        "pandas used the first column as the index: every value shifted one column left (or a TypeError on "
        "row numbers when rows had even more fields)",
        "`geesoil/samples.py`: `read_csv(index_col=False)`, extra fields ignored with a warning",
    ),
    (
        "Parquet/CSV with columns `lon` and ` lon ` (equal once blanks are stripped)",
        "AttributeError: the stripped name selected a 2-column DataFrame",
        "`geesoil/samples.py`: `SampleFileError` 'has two columns named 'lon'; rename or drop one'",
    ),
    (
        "sample table with a `date` of `-1`, or dates with different UTC offsets in one column",
        "'-1' became the year -1 and `summary()` crashed (`NotImplementedError`); mixed offsets raised `ValueError`",
        "`geesoil/samples.py`: dates outside 1000-2200 are left empty (and counted); mixed offsets read in UTC",
    ),
    (
        "model file whose `model.json` is `[1, 2]`, `null`, has `format_version: null`, or `medians: null`",
        "AttributeError / TypeError tracebacks from `read_metadata` and `from_state`",
        "`geesoil/model/io.py`: shape checks; loader errors of any kind become `ModelError` naming the file",
    ),
    (
        "model file whose `weights.pt` carries a pickle `__reduce__` payload",
        "not executed (`weights_only=True`), but `pickle.UnpicklingError` escaped as a traceback whose text "
        "suggested `weights_only=False`",
        "`geesoil/model/io.py`: `ModelError` 'refusing to load weights holding pickled objects'",
    ),
    (
        "model file whose `forest.skops` is a raw pickle",
        "`ModelError` without the file name ('rf model: not a skops archive')",
        "`geesoil/model/io.py`: the model file's path is prefixed to loader `ModelError`s",
    ),
    (
        "Earth Engine extraction whose cache write hits a full disk (`ENOSPC` in `to_parquet`)",
        "the whole extraction failed with a traceback and left a `.tmp<pid>` file in the cache",
        "`geesoil/ee/source.py`: the failed cache entry is cleaned up and logged; values are still returned",
    ),
    (
        "two `geesoil map` runs on the same `-o` at once",
        "nothing stopped them: both wrote tiles, `settings.json` and COGs into the same folder",
        "`geesoil/mapping/run.py`: `fcntl` lock `OUT/.tiles/map.lock`; the second run gets `MapLocked`",
    ),
    (
        "`geesoil map` SIGKILLed during the COG write",
        "its `.cog-*` temporary folder stayed in the output folder for good",
        "`geesoil/mapping/run.py`: stale `.cog-*` folders are removed once the map lock is held",
    ),
    (
        "`geesoil map` onto a full disk (`ENOSPC`) or a read-only folder (`EROFS`)",
        "a Python traceback and exit code 1",
        "`cli/main.py`: one `Error: cannot write ...` line, exit code 2",
    ),
    (
        "service-account key with `client_email`, `private_key` or `token_uri` null",
        "accepted at login ('service account None'), failed later at the first token refresh",
        "`geesoil/ee/auth.py`: one-line `EarthEngineError` 'malformed service_account key (no client_email)'",
    ),
    (
        "`geesoil map -o PATH` where PATH (or a parent) is an existing file",
        "`FileExistsError` traceback after planning",
        "`geesoil/mapping/run.py`: the plan refuses it ('is a file, not a folder'), exit code 2",
    ),
    (
        "Earth Engine answer naming row 0 three times for three points (or rows `0.5`, `true`)",
        "accepted: rows 1 and 2 silently stayed NaN (read as 'no data there')",
        "`geesoil/ee/source.py`: duplicate and non-integer rows raise `EarthEngineError`",
    ),
    (
        "`--aoi '~0'` (home of an unknown user) or an AOI text with a NUL byte",
        "`RuntimeError` / `ValueError` tracebacks from `pathlib`",
        "`geesoil/mapping/aoi.py`: such texts are not files: `AOIError` 'neither a file nor a bbox'",
    ),
    (
        "`--aoi -1.0,-1.4920548254706504e-40,0.0,0.0` (a bbox 1.5e-40° tall; long hunt)",
        "`ValueError: empty bounds` from `Grid.from_bounds` once projected",
        "`geesoil/mapping/aoi.py`: `aoi_grid` raises `AOIError` 'has no width or height'",
    ),
    (
        'model file whose `model.json` has `"kind": ["rf"]` (long hunt)',
        "`TypeError: unhashable type: 'list'` in `load_model`",
        "`geesoil/model/io.py`: a non-string kind is an unknown kind (`ModelError`)",
    ),
    (
        "forest model file whose `model.json` has `covariates: []` or `medians: {}` (long hunt)",
        "loaded without complaint; the model could not predict (wrong columns, or `KeyError` on the first tile)",
        "`geesoil/baselines.py`: covariates, classes and medians must reproduce the forest's feature names",
    ),
    (
        "SoilNet model file whose `arch.layout` names a class column that does not exist (and similar edits)",
        "loaded fine, then `IndexError`/`RuntimeError` on the first prediction (the first tile of a map)",
        "`geesoil/model/io.py`: `load_model` predicts one row of missing covariates; failure is a `ModelError`",
    ),
)


def examples(n: int) -> int:
    """``n`` hypothesis examples, times ``$GEESOIL_FUZZ_SCALE`` (default 1; e.g. 20 for a long bug hunt)."""
    return n * max(1, int(os.environ.get("GEESOIL_FUZZ_SCALE", "1")))


def tried(category: str, n: int = 1) -> None:
    """Count ``n`` generated inputs of ``category`` (e.g. ``"samples csv"``)."""
    with _lock:
        INPUTS[category] += n


def injected(kind: str, n: int = 1) -> None:
    """Count ``n`` injected faults of ``kind`` (e.g. ``"ENOSPC during COG write"``)."""
    with _lock:
        FAULTS[kind] += n


def _module_of(nodeid: str) -> str:
    return Path(nodeid.split("::", 1)[0]).stem


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    mod = _module_of(report.nodeid)
    if mod not in MODULES:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _ran.add(mod)
        _outcomes[report.outcome] += 1


def render(today: dt.date | None = None) -> str:
    """The report as Markdown."""
    today = today or dt.datetime.now(dt.UTC).date()
    lines = [
        "# Reliability report",
        "",
        f"Generated by the hardening tests ({', '.join(f'`tests/{m}.py`' for m in MODULES)}) on {today}; "
        "rerun `pytest tests/test_fuzz_samples.py tests/test_fuzz_inputs.py tests/test_faults.py "
        "tests/test_secrets.py` to refresh it (it is rewritten only when all four ran).",
        "",
        "Every parser of user input either works or raises a `GeesoilError` naming the input; every injected fault "
        "leaves the previous good state intact and a rerun completes; secrets never reach logs or artefacts.",
        "",
        f"Tests: {_outcomes['passed']} passed, {_outcomes['failed']} failed, {_outcomes['skipped']} skipped. "
        f"Hypothesis examples per property: the defaults x{examples(1)} (`GEESOIL_FUZZ_SCALE`); during "
        "development the properties also ran at x10 to x25, which found the 'long hunt' failures below.",
        "",
        f"## Inputs tried: {sum(INPUTS.values())}",
        "",
        "| input | count |",
        "|---|---:|",
        *[f"| {k} | {v} |" for k, v in sorted(INPUTS.items())],
        "",
        f"## Faults injected: {sum(FAULTS.values())}",
        "",
        "| fault | count |",
        "|---|---:|",
        *[f"| {k} | {v} |" for k, v in sorted(FAULTS.items())],
        "",
        f"## Failures found and fixed: {len(FIXED)}",
        "",
    ]
    if FIXED:
        lines += ["| failing input | what happened | fix |", "|---|---|---|"]
        lines += [f"| {a} | {b} | {c} |" for a, b, c in FIXED]
    else:
        lines.append("None.")
    return "\n".join(lines) + "\n"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if set(MODULES) <= _ran and (INPUTS or FAULTS):
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text(render(), encoding="utf-8")
