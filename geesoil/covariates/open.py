"""Turn the user's words for a covariate source (a pack folder, ``starter``, ``ee``) into a ``CovariateSource``."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from geesoil.covariates.source import CombinedSource, CovariateSource
from geesoil.errors import CovariateError

log = logging.getLogger(__name__)

#: Overrides the user cache folder (where the starter pack is built once and reused).
CACHE_ENV = "GEESOIL_CACHE_DIR"
STARTER = "starter"
EE = "ee"
#: How to write a source, for error and help messages.
SOURCE_HELP = "a covariate pack folder (with pack.json), 'starter' (the built-in starter pack) or 'ee[:CATALOG]' (Earth Engine)"


def cache_dir() -> Path:
    """geesoil's cache folder: ``$GEESOIL_CACHE_DIR`` or platformdirs' user cache dir for ``geesoil``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("geesoil"))


def starter_pack_dir(*, force: bool = False) -> Path:
    """The starter pack in the cache folder, built on first use; the builder leaves a current pack alone."""
    root = cache_dir()
    try:
        from geesoil.covariates.starter import build_starter_pack
    except ModuleNotFoundError as exc:
        if exc.name != "geesoil.covariates.starter":
            raise
        raise CovariateError(
            "the starter covariate pack builder is not available in this geesoil version"
        ) from None
    folder = root / "starter-pack"
    if not (folder / "pack.json").is_file():
        log.warning("building the starter covariate pack in %s (once; set %s to move it)", folder, CACHE_ENV)
    # Wheels are cached under the same root (<root>/wheels), so a rebuild needs no download.
    return Path(build_starter_pack(folder, cache_dir=root, force=force))


def _open_ee(catalog: str | None, *, connect: bool) -> CovariateSource:
    try:
        from geesoil.ee.auth import initialize
        from geesoil.ee.source import EarthEngineSource
    except ModuleNotFoundError as exc:
        if exc.name not in ("geesoil.ee", "geesoil.ee.source", "geesoil.ee.auth"):
            raise
        raise CovariateError(
            "the Earth Engine covariate source is not available in this geesoil version; "
            "use a local pack folder or 'starter'"
        ) from None
    if connect:
        initialize()  # raises EarthEngineError with the fix when there are no credentials or no connection
    # Finished sample batches are cached so an interrupted extraction resumes where it stopped.
    return EarthEngineSource(catalog or "gsoilcpm", cache_dir=cache_dir() / "ee-samples")


def open_source(spec: str | Path, *, connect: bool = True) -> CovariateSource:
    """One source from ``spec``: a pack folder (or its ``pack.json``) → ``LocalPackSource``; ``"starter"`` → the
    cached starter pack (built on first use); ``"ee"`` or ``"ee:CATALOG"`` → Earth Engine (initialised unless
    ``connect=False``, which is enough to list its covariates)."""
    from geesoil.covariates.local import LocalPackSource

    if isinstance(spec, str):
        word = spec.strip()
        if word.lower() == STARTER:
            return LocalPackSource(starter_pack_dir())
        if word.lower() == EE or word.lower().startswith(EE + ":"):
            return _open_ee(word.split(":", 1)[1] if ":" in word else None, connect=connect)
    path = Path(spec).expanduser()
    if not path.exists():
        raise CovariateError(f"covariate source {str(spec)!r} not found; give {SOURCE_HELP}")
    return LocalPackSource(path)


def open_sources(specs: Sequence[str | Path], *, connect: bool = True) -> CovariateSource:
    """Open every spec; several become one ``CombinedSource`` (the first source wins on duplicate names)."""
    if isinstance(specs, str | Path):
        specs = [specs]
    if not specs:
        raise CovariateError(f"no covariate source given; give {SOURCE_HELP}")
    sources = [open_source(s, connect=connect) for s in specs]
    if len(sources) == 1:
        return sources[0]
    owner: dict[str, int] = {}
    shadowed: dict[tuple[int, int], list[str]] = {}
    for i, src in enumerate(sources):
        for s in src.specs:
            if s.name in owner:
                shadowed.setdefault((owner[s.name], i), []).append(s.name)
            else:
                owner[s.name] = i
    for (first, later), names in shadowed.items():
        log.warning(
            "%s also in %s: using %s's (the first source given wins)",
            ", ".join(names),
            specs[later],
            specs[first],
        )
    return CombinedSource(sources)
