"""Soil sample tables: read CSV/Parquet/GeoJSON/GeoPackage, map columns to canonical names, validate rows.

Canonical columns: ``lon``, ``lat`` (WGS84 degrees), the target (default ``oc_gkg``, SOC in g/kg) and, when present,
``profile_id``, ``top_cm``, ``bottom_cm`` and ``date``. Every other column is kept as it is. Problems with the file as
a whole raise :class:`~geesoil.errors.SampleFileError`; problems with single rows drop the row (and are listed in
``SampleSet.rejects``) or, with ``strict=True``, raise :class:`~geesoil.errors.SampleRowError`. Row numbers are
1-based data rows as a user sees them (row 1 is the first row after a CSV's header, on line 2).
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geesoil.errors import SampleFileError, SampleRowError
from geesoil.harmonise import harmonise, location_ids

logger = logging.getLogger(__name__)

DEFAULT_TARGET = "oc_gkg"

# Accepted spellings, compared case-insensitively; the canonical name itself always comes first.
ALIASES: dict[str, tuple[str, ...]] = {
    "lon": ("lon", "longitude", "long", "lng", "x", "lonwgs84", "lon_wgs84"),
    "lat": ("lat", "latitude", "y", "latwgs84", "lat_wgs84"),
    "profile_id": ("profile_id", "sourceid", "profile", "site_id", "siteid", "pedon_id"),
    "top_cm": ("top_cm", "top", "upper", "upper_cm", "uhdicm", "hzdept", "top_depth", "depth_top"),
    "bottom_cm": (
        "bottom_cm",
        "bottom",
        "lower",
        "lower_cm",
        "lhdicm",
        "hzdepb",
        "bottom_depth",
        "depth_bottom",
    ),
    "date": ("date", "sample_date", "sampling_date", "timestrr"),
}
TARGET_ALIASES: dict[str, tuple[str, ...]] = {"oc_gkg": ("oc_gkg", "orcdrc")}

# Plausible value ranges of known targets; rows outside are dropped. SOC above ~600 g/kg is more carbon than
# peat holds (pure organic matter is ~580 g C/kg), e.g. the 961 g/kg horizon in WISE.
TARGET_BOUNDS: dict[str, tuple[float, float]] = {
    "oc_gkg": (0.0, 600.0),
    "clay_pct": (0.0, 100.0),
    "silt_pct": (0.0, 100.0),
    "sand_pct": (0.0, 100.0),
    "ph_h2o": (0.0, 14.0),
    "ph_kcl": (0.0, 14.0),
}

CSV_SUFFIXES = {".csv", ".txt", ".tsv"}
PARQUET_SUFFIXES = {".parquet", ".pq", ".geoparquet"}
VECTOR_SUFFIXES = {".geojson", ".json", ".gpkg", ".shp", ".fgb"}

# Examples of bad rows named in messages and summaries.
_FIRST_ROWS = 5


@dataclass(frozen=True, eq=False)
class SampleSet:
    """A validated sample table.

    ``frame``: canonical columns (``profile_id`` is assigned from the location when the file has none) plus every
    other column of the file. ``rejects``: one row per dropped input row with ``row`` (1-based data row), ``line``
    (line of a CSV file, else missing), ``reason`` and ``values`` (the row's original values, a dict).
    """

    frame: pd.DataFrame
    rejects: pd.DataFrame
    path: Path
    target: str
    n_read: int = 0
    columns: Mapping[str, str] = field(default_factory=dict)
    crs: str | None = None
    profile_id_assigned: bool = False
    duplicate_locations: int = 0

    @property
    def is_horizon_level(self) -> bool:
        """True when the table has horizon depths (``top_cm``/``bottom_cm``)."""
        return {"top_cm", "bottom_cm"} <= set(self.frame.columns)

    def summary(self) -> dict[str, Any]:
        """Counts, ranges and dropped rows by reason, for ``geesoil samples check``."""
        f = self.frame
        t = f[self.target].to_numpy(float)
        out: dict[str, Any] = {
            "file": str(self.path),
            "target": self.target,
            "columns": dict(self.columns),
            "crs": self.crs or "EPSG:4326",
            "rows_read": self.n_read,
            "rows_kept": len(f),
            "rows_dropped": len(self.rejects),
            "dropped_by_reason": {},
            "profiles": int(f["profile_id"].nunique()),
            "profile_id_assigned": self.profile_id_assigned,
            "horizon_level": self.is_horizon_level,
            "duplicate_locations": self.duplicate_locations,
            "lon_range": (float(f["lon"].min()), float(f["lon"].max())),
            "lat_range": (float(f["lat"].min()), float(f["lat"].max())),
            "target_min": float(np.min(t)),
            "target_median": float(np.median(t)),
            "target_max": float(np.max(t)),
        }
        if self.is_horizon_level:
            out["depth_range"] = (float(f["top_cm"].min()), float(f["bottom_cm"].max()))
            out["organic_layers"] = int((f["top_cm"] < 0).sum())
        if "date" in f.columns and f["date"].notna().any():
            out["date_range"] = (str(f["date"].min().date()), str(f["date"].max().date()))
        for reason, rows in _rows_by_reason(self.rejects).items():
            out["dropped_by_reason"][reason] = {"count": len(rows), "first_rows": rows[:_FIRST_ROWS]}
        return out


def read_samples(
    path: str | Path, *, target: str = DEFAULT_TARGET, crs: str | None = None, strict: bool = False
) -> SampleSet:
    """Read and validate a sample table (CSV, Parquet, GeoJSON, GeoPackage...).

    ``crs``: the CRS of the coordinate columns of a CSV/Parquet file (e.g. ``"EPSG:28355"``); vector files carry
    their own. Coordinates are reprojected to WGS84. ``strict``: row-level problems raise
    :class:`SampleRowError` instead of dropping the row.
    """
    path = Path(path)
    raw, kind, src_crs = _read_raw(path, crs)
    n_read = len(raw)
    if n_read == 0:
        raise SampleFileError(f"{path}: has a header but no data rows; add samples to it")
    cols = _resolve_columns(path, raw.columns, target)
    rows = raw.index.to_numpy() + 1
    lines = rows + 1 if kind == "csv" else None
    decimal_comma = bool(raw.attrs.get("decimal_comma"))

    values: dict[str, np.ndarray] = {}
    reasons: list[list[str]] = [[] for _ in range(n_read)]
    numeric = ["lon", "lat", target] + [c for c in ("top_cm", "bottom_cm") if c in cols]
    unparsed: dict[str, np.ndarray] = {}
    for canon in numeric:
        values[canon], unparsed[canon] = _numeric_column(
            path, raw[cols[canon]], canon, rows, lines, reasons, decimal_comma
        )

    lon, lat = values["lon"], values["lat"]
    if src_crs is not None:
        lon, lat = _to_wgs84(path, lon, lat, src_crs)
        values["lon"], values["lat"] = lon, lat
    _check_coordinates_file_level(path, lon, lat, src_crs, rows, lines)
    _check_rows(values, unparsed, target, reasons)

    bad = np.array([bool(r) for r in reasons])
    rejects = _rejects_frame(raw, bad, reasons, rows, lines)
    if bad.any():
        msg = _rejects_message(path, rejects)
        if strict:
            raise SampleRowError(f"{msg}; fix these rows or run without --strict to drop them")
        if bad.all():
            raise SampleFileError(f"{msg}; no valid rows remain")
        logger.warning("%s", msg)

    frame = _canonical_frame(raw, cols, values, target, path)
    keep = ~bad
    frame = frame.loc[keep].reset_index(drop=True)
    frame.attrs.clear()
    assigned = "profile_id" not in cols
    if assigned:
        frame.insert(0, "profile_id", location_ids(frame["lon"].to_numpy(), frame["lat"].to_numpy()))
        logger.info("%s: no profile_id column; profiles identified by location", path)
    dups = _duplicate_locations(path, frame, rows[keep])
    return SampleSet(
        frame=frame,
        rejects=rejects,
        path=path,
        target=target,
        n_read=n_read,
        columns=dict(cols),
        crs=None if src_crs is None else src_crs.to_string(),
        profile_id_assigned=assigned,
        duplicate_locations=dups,
    )


def load_samples(
    path: str | Path,
    *,
    target: str = DEFAULT_TARGET,
    depth: tuple[float, float] = (0, 30),
    method: str = "spline",
    crs: str | None = None,
) -> pd.DataFrame:
    """Samples ready for modelling: read, drop invalid rows and harmonise horizons to ``depth`` when needed.

    A horizon table (``top_cm``/``bottom_cm``) is harmonised when any profile has several horizons or a horizon
    other than ``depth``; point samples are returned as they are (with a ``profile_id`` from the location when the
    file has none). Raises :class:`SampleFileError` when nothing usable remains.
    """
    ss = read_samples(path, target=target, crs=crs, strict=False)
    f = ss.frame
    if not ss.is_horizon_level:
        return f
    d0, d1 = float(depth[0]), float(depth[1])
    several = f["profile_id"].duplicated().any()
    other = not (np.allclose(f["top_cm"], d0) and np.allclose(f["bottom_cm"], d1))
    if not (several or other):
        return f
    h = harmonise(f, depth=(d0, d1), method=method, target=target)
    if h.frame.empty:
        raise SampleFileError(
            f"{ss.path}: no profile covers {_fmt(d0)}-{_fmt(d1)} cm ({_reason_counts(h.dropped)}); "
            "choose a depth interval the profiles cover"
        )
    return h.frame


def pool_sources(frames: Sequence[pd.DataFrame], decimals: int = 3) -> pd.DataFrame:
    """Concatenate sample tables, dropping rows whose location (rounded to ``decimals``) occurred earlier.

    Sources share profiles (e.g. 2,148 AfSP sites also in WISE), so the first table wins. Rows are labelled by
    their ``source`` column, or ``frame <i>`` when there is none. The number dropped per source is logged and
    stored in ``result.attrs["dropped_per_source"]``.
    """
    if not frames:
        raise ValueError("pool_sources needs at least one frame")
    labelled = []
    for i, fr in enumerate(frames):
        label = (
            fr["source"].astype(str) if "source" in fr.columns else pd.Series(f"frame {i}", index=fr.index)
        )
        labelled.append((fr, label.to_numpy()))
    pooled = pd.concat([fr for fr, _ in labelled], ignore_index=True)
    labels = np.concatenate([lab for _, lab in labelled])
    key = pd.DataFrame(
        {
            "x": np.round(pooled["lon"].to_numpy(float), decimals),
            "y": np.round(pooled["lat"].to_numpy(float), decimals),
        }
    )
    dup = key.duplicated(keep="first").to_numpy()
    dropped = {str(s): 0 for s in dict.fromkeys(labels)}
    for s, n in zip(*np.unique(labels[dup], return_counts=True), strict=True):
        dropped[str(s)] = int(n)
    logger.info(
        "pool_sources: dropped %d rows at locations already present (%s)",
        int(dup.sum()),
        ", ".join(f"{s} {n}" for s, n in dropped.items()),
    )
    out = pooled.loc[~dup].reset_index(drop=True)
    out.attrs["dropped_per_source"] = dropped
    return out


def write_rejects(rejects: pd.DataFrame, path: str | Path) -> Path:
    """Write rejected rows as CSV: ``row``, ``line``, ``reason`` and the original columns (atomically)."""
    vals = pd.DataFrame(list(rejects["values"]), index=rejects.index) if len(rejects) else pd.DataFrame()
    vals = vals.rename(columns=lambda c: f"{c}_value" if c in ("row", "line", "reason") else c)
    out = pd.concat([rejects[["row", "line", "reason"]], vals], axis=1)
    return save_table(out, path)


def save_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` as Parquet (or CSV for a ``.csv`` path) atomically: a temp file renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        if path.suffix.lower() == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# --- reading -------------------------------------------------------------------------------------------------


def _read_raw(path: Path, crs: str | None) -> tuple[pd.DataFrame, str, Any]:
    """The file as a DataFrame (coordinate columns as read), its kind and the CRS of its coordinates."""
    if not path.exists():
        raise SampleFileError(f"{path}: file not found; check the path")
    if path.is_dir():
        raise SampleFileError(f"{path}: is a folder, not a sample table")
    if path.stat().st_size == 0:
        raise SampleFileError(f"{path}: file is empty; it needs a header and one row per sample")
    suffix = path.suffix.lower()
    user_crs = _parse_crs(crs) if crs is not None else None
    if suffix in CSV_SUFFIXES:
        return _read_csv(path), "csv", user_crs
    if suffix in PARQUET_SUFFIXES:
        if _is_geoparquet(path):
            return _read_vector(path, user_crs, geoparquet=True)
        return _read_parquet(path), "parquet", user_crs
    if suffix in VECTOR_SUFFIXES:
        return _read_vector(path, user_crs)
    raise SampleFileError(
        f"{path}: unknown file type '{suffix}'; use .csv, .parquet, .geojson or .gpkg (point features)"
    )


def _read_csv(path: Path) -> pd.DataFrame:
    with path.open("rb") as fh:
        head = fh.read(1 << 16)
    if b"\x00" in head:
        raise SampleFileError(f"{path}: not a text CSV file (binary content); export it as CSV")
    encoding = "utf-8-sig"
    try:
        text = head.decode(encoding)
    except UnicodeDecodeError:
        encoding = "latin-1"
        text = head.decode(encoding)
        logger.info("%s: not UTF-8; read as Latin-1", path)
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    counts = {sep: first.count(sep) for sep in (",", ";", "\t", "|")}
    sep = max(counts, key=lambda s: counts[s])
    if counts[sep] == 0:
        sep = ","
    try:
        header = pd.read_csv(path, sep=sep, nrows=0, encoding=encoding, index_col=False)
        # canonical candidates are read as text so that the original values survive for the rejects report
        wanted = {a for names in (*ALIASES.values(), *TARGET_ALIASES.values()) for a in names}
        text_cols = {c: str for c in header.columns if str(c).strip().lower() in wanted}
        # index_col=False: rows with a trailing separator must not turn the first column into the index
        # (which shifted every value one column left)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            raw = pd.read_csv(
                path,
                sep=sep,
                encoding=encoding,
                skip_blank_lines=False,
                dtype=text_cols,
                low_memory=False,
                index_col=False,
            )
        if any(issubclass(w.category, pd.errors.ParserWarning) for w in caught):
            logger.warning(
                "%s: some rows have more fields than the header; the extra fields are ignored", path
            )
    except pd.errors.EmptyDataError as exc:
        raise SampleFileError(f"{path}: file is empty; it needs a header and one row per sample") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise SampleFileError(
            f"{path}: cannot parse as CSV ({_first_line(exc)}); check the separator and quoting"
        ) from exc
    raw.columns = _stripped_columns(path, raw.columns)
    raw = raw.loc[~raw.isna().all(axis=1)]  # blank lines keep their number but are not rows
    raw.attrs["decimal_comma"] = sep == ";"
    return raw


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow

    try:
        raw = pd.read_parquet(path)
    except (OSError, ValueError, pyarrow.ArrowException) as exc:
        raise SampleFileError(f"{path}: cannot read as Parquet ({_first_line(exc)})") from exc
    raw.columns = _stripped_columns(path, raw.columns)
    return raw.reset_index(drop=True)


def _stripped_columns(path: Path, columns: Sequence[Any]) -> list[str]:
    """Column names without surrounding blanks; two that become the same name are an error, not a 2-D column."""
    names = [str(c).strip() for c in columns]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise SampleFileError(f"{path}: has two columns named {name!r}; rename or drop one")
        seen.add(name)
    return names


def _is_geoparquet(path: Path) -> bool:
    import pyarrow
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, ValueError, pyarrow.ArrowException):
        return False
    return b"geo" in meta


def _read_vector(path: Path, user_crs: Any, *, geoparquet: bool = False) -> tuple[pd.DataFrame, str, Any]:
    import geopandas as gpd
    import pyogrio.errors
    import shapely

    try:
        data = gpd.read_parquet(path) if geoparquet else gpd.read_file(path, engine="pyogrio")
    except (
        OSError,
        ValueError,
        RuntimeError,
        pyogrio.errors.DataSourceError,
        pyogrio.errors.DataLayerError,
    ) as exc:
        raise SampleFileError(f"{path}: cannot read as a vector file ({_first_line(exc)})") from exc
    if not isinstance(data, gpd.GeoDataFrame) or data.geometry.name not in data.columns:
        raw = pd.DataFrame(data).reset_index(drop=True)
        raw.columns = _stripped_columns(path, raw.columns)
        return raw, "vector", user_crs
    geom = data.geometry.to_numpy()
    present = ~(shapely.is_missing(geom) | shapely.is_empty(geom))
    types = set(shapely.get_type_id(geom[present]).tolist())
    if types - {0}:  # 0 = Point
        names = sorted({shapely.geometry.base.GEOMETRY_TYPES[t] for t in types - {0}})
        raise SampleFileError(
            f"{path}: has {', '.join(names)} geometries; samples must be points (one per sample location)"
        )
    x = np.full(len(geom), np.nan)
    y = np.full(len(geom), np.nan)
    x[present] = shapely.get_x(geom[present])
    y[present] = shapely.get_y(geom[present])
    raw = pd.DataFrame(data.drop(columns=data.geometry.name)).reset_index(drop=True)
    raw.columns = _stripped_columns(path, raw.columns)
    clash = [c for c in raw.columns if c.lower() in ("lon", "lat")]
    if clash:
        logger.info("%s: using point geometries for lon/lat, ignoring columns %s", path, ", ".join(clash))
        raw = raw.drop(columns=clash)
    raw.insert(0, "lat", y)
    raw.insert(0, "lon", x)
    src = data.crs
    if src is None:
        src = user_crs
    elif user_crs is not None and not user_crs.equals(src):
        logger.warning("%s: file has CRS %s; ignoring --crs %s", path, src.to_string(), user_crs.to_string())
    return raw, "vector", src


def _parse_crs(crs: str) -> Any:
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        return CRS.from_user_input(crs)
    except CRSError as exc:
        raise SampleFileError(f"--crs {crs!r} is not a CRS PROJ knows; give e.g. EPSG:28355") from exc


def _to_wgs84(path: Path, x: np.ndarray, y: np.ndarray, src: Any) -> tuple[np.ndarray, np.ndarray]:
    from pyproj import CRS, Transformer

    if src.equals(CRS.from_epsg(4326), ignore_axis_order=True):
        return x, y
    logger.info("%s: reprojecting coordinates from %s to EPSG:4326", path, src.to_string())
    tr = Transformer.from_crs(src, 4326, always_xy=True)
    ok = np.isfinite(x) & np.isfinite(y)
    lon = np.full_like(x, np.nan)
    lat = np.full_like(y, np.nan)
    lon[ok], lat[ok] = tr.transform(x[ok], y[ok], errcheck=False)
    return lon, lat


# --- columns and values --------------------------------------------------------------------------------------


def _resolve_columns(path: Path, columns: Sequence[str], target: str) -> dict[str, str]:
    """Canonical name -> column in the file, for every canonical column found."""
    by_lower: dict[str, str] = {}
    for c in columns:
        by_lower.setdefault(c.lower(), c)
    wanted = dict(ALIASES)
    wanted[target] = TARGET_ALIASES.get(target, (target,))
    found: dict[str, str] = {}
    for canon, names in wanted.items():
        for name in names:
            if name.lower() in by_lower:
                found[canon] = by_lower[name.lower()]
                if found[canon] != canon:
                    logger.info("%s: using column '%s' as %s", path, found[canon], canon)
                break
    missing = [c for c in ("lon", "lat", target) if c not in found]
    if missing:
        hints = "; ".join(f"{m} (or {', '.join(wanted[m][1:]) or 'set --target'})" for m in missing)
        raise SampleFileError(
            f"{path}: missing column(s) {hints}; the file has {', '.join(map(str, columns)) or 'no columns'}"
            + ("" if target in found else "; use --target COL to name the target column")
        )
    if ("top_cm" in found) != ("bottom_cm" in found):
        have, lack = ("top_cm", "bottom_cm") if "top_cm" in found else ("bottom_cm", "top_cm")
        raise SampleFileError(
            f"{path}: has {have} ('{found[have]}') but no {lack}; horizons need both depths"
        )
    return found


def _numeric_column(
    path: Path,
    col: pd.Series,
    canon: str,
    rows: np.ndarray,
    lines: np.ndarray | None,
    reasons: list[list[str]],
    decimal_comma: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Float values and a mask of unparseable cells (NaN, with a row reason); a mostly-text column is an error."""
    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        num = col.to_numpy(dtype=float, na_value=np.nan)
        return num, np.zeros(len(num), dtype=bool)
    text = col.astype("string").str.strip()
    if decimal_comma:
        text = text.str.replace(r"^([+-]?\d*),(\d+)$", r"\1.\2", regex=True)
    num = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    given = text.notna().to_numpy() & (text.fillna("") != "").to_numpy()
    bad = (
        given
        & np.isnan(num)
        & ~text.str.lower().isin(["nan", "na", "n/a", "null", "none", "-"]).fillna(False).to_numpy()
    )
    if bad.sum() > 0 and bad.sum() * 2 > given.sum():
        i = int(np.flatnonzero(bad)[0])
        raise SampleFileError(
            f"{path}: column '{col.name}' ({canon}) is not numeric, e.g. {text.iloc[i]!r} at {_where(rows[i], lines, i)}; "
            "it must hold numbers"
        )
    for i in np.flatnonzero(bad):
        reasons[i].append(f"{canon} not a number: {text.iloc[i]!r}")
    return num, bad


def _check_coordinates_file_level(
    path: Path, lon: np.ndarray, lat: np.ndarray, src_crs: Any, rows: np.ndarray, lines: np.ndarray | None
) -> None:
    ok = np.isfinite(lon) & np.isfinite(lat)
    n = int(ok.sum())
    if n == 0:
        return
    swapped = ok & (np.abs(lat) > 90) & (np.abs(lon) <= 90)
    if swapped.sum() * 2 > n:
        i = int(np.flatnonzero(swapped)[0])
        raise SampleFileError(
            f"{path}: lon/lat look swapped: {int(swapped.sum())} of {n} rows have |lat| > 90 but |lon| <= 90 "
            f"(e.g. lon={lon[i]:g}, lat={lat[i]:g} at {_where(rows[i], lines, i)}); swap the two column names"
        )
    outside = ok & ((np.abs(lon) > 180) | (np.abs(lat) > 90))
    if outside.sum() * 2 > n:
        i = int(np.flatnonzero(outside)[0])
        fix = "check the CRS" if src_crs is not None else "give their CRS with --crs (e.g. --crs EPSG:28355)"
        raise SampleFileError(
            f"{path}: {int(outside.sum())} of {n} rows have coordinates outside degree ranges "
            f"(e.g. {lon[i]:g}, {lat[i]:g} at {_where(rows[i], lines, i)}); they look projected: {fix}"
        )


def _check_rows(
    values: dict[str, np.ndarray], unparsed: dict[str, np.ndarray], target: str, reasons: list[list[str]]
) -> None:
    def add(mask: np.ndarray, fmt: str, arr: np.ndarray | None = None) -> None:
        for i in np.flatnonzero(mask):
            reasons[i].append(fmt.format(arr[i]) if arr is not None else fmt)

    for canon in values:
        v = values[canon]
        add(np.isnan(v) & ~unparsed[canon], f"{canon} missing")
        add(np.isinf(v), f"{canon} not finite: {{:g}}", v)
    lon, lat = values["lon"], values["lat"]
    add(np.isfinite(lon) & (np.abs(lon) > 180), "lon out of range [-180, 180]: {:g}", lon)
    add(np.isfinite(lat) & (np.abs(lat) > 90), "lat out of range [-90, 90]: {:g}", lat)
    t = values[target]
    lo, hi = TARGET_BOUNDS.get(target, (-math.inf, math.inf))
    if lo == 0:
        add(np.isfinite(t) & (t < 0), f"{target} negative: {{:g}}", t)
    elif math.isfinite(lo):
        add(np.isfinite(t) & (t < lo), f"{target} below {lo:g}: {{:g}}", t)
    if math.isfinite(hi):
        add(np.isfinite(t) & (t > hi), f"{target} above {hi:g}: {{:g}}", t)
    if "top_cm" in values:
        top, bot = values["top_cm"], values["bottom_cm"]
        bad = np.isfinite(top) & np.isfinite(bot) & (top >= bot)
        for i in np.flatnonzero(bad):
            reasons[i].append(f"top_cm >= bottom_cm: {top[i]:g} >= {bot[i]:g}")


def _canonical_frame(
    raw: pd.DataFrame, cols: Mapping[str, str], values: Mapping[str, np.ndarray], target: str, path: Path
) -> pd.DataFrame:
    used = set(cols.values())
    out: dict[str, Any] = {}
    if "profile_id" in cols:
        pid = raw[cols["profile_id"]]
        out["profile_id"] = pid.astype("string").str.strip().to_numpy(dtype=object, na_value=None)
    out["lon"] = values["lon"]
    out["lat"] = values["lat"]
    out[target] = values[target]
    for c in ("top_cm", "bottom_cm"):
        if c in values:
            out[c] = values[c]
    if "date" in cols:
        out["date"] = _parse_dates(path, raw[cols["date"]])
    frame = pd.DataFrame(out, index=raw.index)
    if "profile_id" in frame.columns:
        missing = frame["profile_id"].isna()
        if missing.any():
            # rows without an id are their own profile at their location
            frame.loc[missing, "profile_id"] = location_ids(
                frame.loc[missing, "lon"].to_numpy(), frame.loc[missing, "lat"].to_numpy()
            )
        frame["profile_id"] = frame["profile_id"].astype("string")
    extras = [c for c in raw.columns if c not in used and c not in frame.columns]
    return pd.concat([frame, raw[extras]], axis=1)


def _parse_dates(path: Path, col: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        return col
    if pd.api.types.is_numeric_dtype(col.dtype):
        years = col.astype(float)
        ok = years.between(1000, 2200) & (years % 1 == 0)
        out = pd.to_datetime(years.where(ok).astype("Int64").astype("string"), format="%Y", errors="coerce")
    else:
        text = col.astype("string").str.strip()
        try:
            out = pd.to_datetime(text, errors="coerce", format="mixed")
        except ValueError:  # several UTC offsets in one column: read them all in UTC
            out = pd.to_datetime(text, errors="coerce", format="mixed", utc=True)
    if isinstance(out.dtype, pd.DatetimeTZDtype):
        out = out.dt.tz_convert("UTC").dt.tz_localize(None)
    # "-1" parses as the year -1, which no sample has and Python's date cannot hold
    out = out.where(out.isna() | out.dt.year.between(1000, 2200))
    n_bad = int((col.notna() & out.isna()).sum())
    if n_bad:
        logger.warning(
            "%s: %d dates in column '%s' could not be read and are left empty", path, n_bad, col.name
        )
    return out


def _duplicate_locations(path: Path, frame: pd.DataFrame, rows: np.ndarray) -> int:
    """Number of locations shared by several profiles (or, without depths, several rows); logged, not dropped."""
    if {"top_cm", "bottom_cm"} <= set(frame.columns):
        sites = frame.drop_duplicates(["profile_id", "lon", "lat"])
    else:
        sites = frame
    dup = sites.duplicated(["lon", "lat"], keep=False)
    if not dup.any():
        return 0
    n_loc = int(sites.loc[dup, ["lon", "lat"]].drop_duplicates().shape[0])
    first = ", ".join(str(r) for r in rows[sites.index[dup]][:_FIRST_ROWS])
    logger.warning(
        "%s: %s more than one %s (rows %s...); they are kept",
        path,
        _plural(n_loc, "location has", "locations have"),
        "profile" if "top_cm" in frame.columns else "sample",
        first,
    )
    return n_loc


# --- rejects -------------------------------------------------------------------------------------------------


def _rejects_frame(
    raw: pd.DataFrame, bad: np.ndarray, reasons: list[list[str]], rows: np.ndarray, lines: np.ndarray | None
) -> pd.DataFrame:
    idx = np.flatnonzero(bad)
    sub = raw.iloc[idx].copy()
    for c in sub.columns:
        if sub[c].dtype == np.float32:  # report 665.6, not 665.5999755859375
            sub[c] = pd.array([float(str(x)) for x in sub[c].to_numpy()], dtype=object)
    values = (
        [{str(k): _plain(v) for k, v in rec.items()} for rec in sub.to_dict(orient="records")]
        if len(idx)
        else []
    )
    return pd.DataFrame(
        {
            "row": rows[idx].astype(np.int64),
            "line": pd.array(lines[idx] if lines is not None else [None] * len(idx), dtype="Int64"),
            "reason": ["; ".join(reasons[i]) for i in idx],
            "values": values,
        }
    )


def _plain(v: Any) -> Any:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, str | int | float | bool):
        return v
    return str(v)


def _rows_by_reason(rejects: pd.DataFrame) -> dict[str, list[int]]:
    """Reason category (text before ':') -> rejected row numbers; a row with several reasons counts under each."""
    out: dict[str, list[int]] = {}
    for row, reason in zip(rejects["row"], rejects["reason"], strict=True):
        for part in reason.split("; "):
            out.setdefault(part.split(":")[0], []).append(int(row))
    return dict(sorted(out.items(), key=lambda kv: -len(kv[1])))


def _rejects_message(path: Path, rejects: pd.DataFrame) -> str:
    parts = []
    for reason, rows in _rows_by_reason(rejects).items():
        first = rejects.set_index("row").loc[rows[0]]
        where = f"row {rows[0]}" + ("" if pd.isna(first["line"]) else f" (line {int(first['line'])})")
        detail = next(p for p in first["reason"].split("; ") if p.split(":")[0] == reason)
        more = f", rows {', '.join(map(str, rows[:_FIRST_ROWS]))}{'...' if len(rows) > _FIRST_ROWS else ''}"
        parts.append(f"{len(rows)} x {reason} (e.g. {where}: {detail}{more if len(rows) > 1 else ''})")
    return f"{path}: {_plural(len(rejects), 'invalid row', 'invalid rows')}: " + "; ".join(parts)


def _reason_counts(dropped: pd.DataFrame) -> str:
    counts = dropped["reason"].str.split(":").str[0].value_counts()
    return ", ".join(f"{n} {r}" for r, n in counts.items()) or "no profiles"


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _where(row: int, lines: np.ndarray | None, i: int) -> str:
    return f"row {row}" + ("" if lines is None else f" (line {lines[i]})")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _fmt(x: float) -> str:
    return f"{x:g}"
