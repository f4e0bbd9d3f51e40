"""Depth harmonisation: horizon values to one value per profile over a target interval (e.g. 0-30 cm).

Two methods. ``weighted``: the thickness-weighted mean of the horizons overlapping the interval (gaps between
horizons carry no weight). ``spline``: the mass-preserving equal-area quadratic smoothing spline of Bishop,
McBratney & Laslett (1999, Geoderma 89:185-208), as in GSIF/ithir ``mpspline`` and mpspline2: smoothing ``lam`` (0.1),
spline values clamped to ``bounds`` (mpspline's vlow/vhigh) before averaging over the interval. The per-profile
linear systems are solved in batches of profiles with the same horizon count.

Horizons entirely above the mineral surface (``bottom_cm <= 0``: FAO organic layers) are not used; exact duplicate
horizons (replicates) are averaged; profiles whose horizons overlap within the interval are dropped (an overlap
below it ends the profile there). A profile must span the interval (``allow_partial`` keeps profiles spanning part
of it, averaged over that part, with ``top_cm``/``bottom_cm`` saying which).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from geesoil.errors import SampleFileError

logger = logging.getLogger(__name__)

METHODS = ("spline", "weighted")
# Spline clamps per target; mpspline's defaults (0, 1000) for others. SOC is kept within what validation allows.
SPLINE_BOUNDS: dict[str, tuple[float, float]] = {"oc_gkg": (0.0, 600.0)}
DEFAULT_BOUNDS = (0.0, 1000.0)
# Spline averages use the midpoint rule on steps no longer than this (cm); exact for the linear parts of the
# spline, within ~1e-4 relative for its quadratic parts.
_STEP_CM = 0.25
# Depth tolerance (cm) when testing coverage and overlaps: depths are often float32 with rounding noise.
_EPS = 1e-3
# Keeps the evaluation arrays of one batch below ~32 MB.
_MAX_BATCH_CELLS = 4_000_000


@dataclass(frozen=True, eq=False)
class Harmonised:
    """One row per profile (``frame``) and the profiles dropped with why (``dropped``: profile_id, reason)."""

    frame: pd.DataFrame
    dropped: pd.DataFrame
    depth: tuple[float, float]
    method: str


def location_ids(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Profile ids from locations (``"lat_lon"`` at 6 decimals, ~0.1 m) for tables without a profile_id."""
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    return np.array([f"{b:.6f}_{a:.6f}" for a, b in zip(lon, lat, strict=True)], dtype=object)


def harmonise(
    frame: pd.DataFrame,
    *,
    depth: tuple[float, float] = (0, 30),
    method: str = "spline",
    target: str = "oc_gkg",
    allow_partial: bool = False,
    lam: float = 0.1,
    bounds: tuple[float, float] | None = None,
) -> Harmonised:
    """Harmonise a horizon table (``profile_id``, ``lon``, ``lat``, ``top_cm``, ``bottom_cm``, target) to ``depth``.

    Returns one row per profile: ``profile_id, lon, lat, <target>, top_cm, bottom_cm, n_horizons`` (the interval
    actually averaged and the number of horizons used: all of the profile's for the spline, those overlapping the
    interval for the weighted mean) plus columns that are constant within every profile (``source``, ``date``...).
    """
    d0, d1 = float(depth[0]), float(depth[1])
    if not (np.isfinite(d0) and np.isfinite(d1) and 0 <= d0 < d1):
        raise ValueError(f"depth must be (top, bottom) with 0 <= top < bottom, got {depth}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    lo, hi = bounds if bounds is not None else SPLINE_BOUNDS.get(target, DEFAULT_BOUNDS)
    need = ["lon", "lat", target, "top_cm", "bottom_cm"]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise SampleFileError(
            f"sample table lacks {', '.join(missing)}: harmonising needs horizons with top_cm, bottom_cm and {target}"
        )
    pid = (
        frame["profile_id"].astype("string").to_numpy(dtype=object, na_value=None)
        if "profile_id" in frame.columns
        else location_ids(frame["lon"].to_numpy(), frame["lat"].to_numpy())
    )
    codes, uniques = pd.factorize(pd.Series(pid, dtype="string"), use_na_sentinel=False)
    n_prof = len(uniques)
    top = frame["top_cm"].to_numpy(dtype=float, na_value=np.nan)
    bot = frame["bottom_cm"].to_numpy(dtype=float, na_value=np.nan)
    val = frame[target].to_numpy(dtype=float, na_value=np.nan)
    reasons: dict[int, str] = {}

    ok = np.isfinite(top) & np.isfinite(bot) & np.isfinite(val) & (bot > top)
    if (~ok).any():
        logger.warning(
            "harmonise: ignoring %d horizons with missing values or top >= bottom", int((~ok).sum())
        )
    organic = ok & (bot <= _EPS)
    straddle = ok & ~organic & (top < 0)
    if straddle.any():
        logger.info(
            "harmonise: %d horizons start above the mineral surface; using their part below 0 cm",
            int(straddle.sum()),
        )
    use = ok & ~organic
    hz = pd.DataFrame({"p": codes[use], "top": np.maximum(top[use], 0.0), "bot": bot[use], "val": val[use]})
    # replicate samples of the same horizon are averaged
    hz = hz.groupby(["p", "top", "bot"], sort=True, as_index=False)["val"].mean()
    n_dup = int(use.sum()) - len(hz)
    if n_dup:
        logger.info("harmonise: averaged %d replicate horizons (same profile and depths)", n_dup)

    hz, overlap_reasons = _resolve_overlaps(hz, d1)
    reasons.update(overlap_reasons)
    p = hz["p"].to_numpy()
    htop = hz["top"].to_numpy()
    hbot = hz["bot"].to_numpy()
    hval = hz["val"].to_numpy()

    # per-profile span and the interval to average over
    span_top = np.full(n_prof, np.nan)
    span_bot = np.full(n_prof, np.nan)
    starts = np.flatnonzero(np.r_[True, p[1:] != p[:-1]]) if len(p) else np.array([], dtype=int)
    counts = np.diff(np.r_[starts, len(p)])
    pp = p[starts]
    span_top[pp] = htop[starts]
    if len(p):
        span_bot[pp] = np.maximum.reduceat(hbot, starts)
    a = np.maximum(span_top, d0)
    b = np.minimum(span_bot, d1)
    has = np.isfinite(span_top)
    full = has & (span_top <= d0 + _EPS) & (span_bot >= d1 - _EPS)
    touches = has & (b > a + _EPS)
    interval = f"{d0:g}-{d1:g} cm"
    for i in np.flatnonzero(~has):
        if i not in reasons:
            reasons[i] = "no mineral horizons: only organic layers above 0 cm or invalid horizons"
    for i in np.flatnonzero(has & ~touches):
        reasons.setdefault(
            i, f"no horizon within {interval}: horizons span {span_top[i]:g}-{span_bot[i]:g} cm"
        )
    partial = touches & ~full
    if not allow_partial:
        for i in np.flatnonzero(partial):
            reasons.setdefault(
                i, f"does not cover {interval}: horizons span {span_top[i]:g}-{span_bot[i]:g} cm"
            )
    keep = full | (partial & allow_partial)
    for i in reasons:
        keep[i] = False
    a = np.where(full, d0, a)
    b = np.where(full, d1, b)

    value = np.full(n_prof, np.nan)
    n_used = np.zeros(n_prof, dtype=np.int64)
    keep_h = keep[p] if len(p) else np.zeros(0, dtype=bool)
    if method == "weighted":
        w = np.clip(np.minimum(hbot, b[p]) - np.maximum(htop, a[p]), 0.0, None) * keep_h
        wsum = np.bincount(p, weights=w, minlength=n_prof)
        vsum = np.bincount(p, weights=w * hval, minlength=n_prof)
        with np.errstate(invalid="ignore", divide="ignore"):
            value = vsum / wsum
        n_used = np.bincount(p, weights=(w > 0).astype(float), minlength=n_prof).astype(np.int64)
        for i in np.flatnonzero(keep & ~(wsum > 0)):
            reasons[i] = f"no horizon within {interval}: it falls in a gap between horizons"
            keep[i] = False
    else:
        kept_starts = keep[pp]
        for n in np.unique(counts[kept_starts]):
            sel = kept_starts & (counts == n)
            prof = pp[sel]
            idx = starts[sel][:, None] + np.arange(n)[None, :]
            value[prof] = spline_means(
                htop[idx], hbot[idx], hval[idx], a[prof], b[prof], lam=lam, bounds=(lo, hi)
            )
            n_used[prof] = n

    # profile-level columns: the first row of each profile
    first = np.unique(codes, return_index=True)[1]
    base = frame.iloc[first]
    out = pd.DataFrame(
        {
            "profile_id": pd.array(uniques.astype(object), dtype="string"),
            "lon": base["lon"].to_numpy(dtype=float),
            "lat": base["lat"].to_numpy(dtype=float),
            target: value,
            "top_cm": a,
            "bottom_cm": b,
            "n_horizons": n_used,
        }
    )
    _warn_moving_profiles(frame, codes, n_prof)
    extras = _profile_constant_columns(frame, codes, exclude=set(need) | {"profile_id"})
    for c in extras:
        out[c] = base[c].reset_index(drop=True)
    out = out.loc[keep].reset_index(drop=True)
    dropped = pd.DataFrame(
        {
            "profile_id": pd.array([uniques[i] for i in sorted(reasons)], dtype="string"),
            "reason": [reasons[i] for i in sorted(reasons)],
        }
    )
    if len(dropped):
        counts_by = dropped["reason"].str.split(":").str[0].value_counts()
        logger.warning(
            "harmonise: dropped %d of %d profiles (%s)",
            len(dropped),
            n_prof,
            ", ".join(f"{n} {r}" for r, n in counts_by.items()),
        )
    if allow_partial and partial.any():
        logger.info("harmonise: %d profiles cover only part of %s", int((partial & keep).sum()), interval)
    return Harmonised(frame=out, dropped=dropped, depth=(d0, d1), method=method)


def spline_fit(
    top: np.ndarray, bottom: np.ndarray, values: np.ndarray, *, lam: float = 0.1
) -> dict[str, np.ndarray]:
    """Equal-area spline parameters for a batch of profiles with the same horizon count ``n`` (arrays ``(B, n)``).

    Returns ``s_bar`` (fitted horizon means), ``b0``/``b1`` (slopes at each horizon's top/bottom), ``gamma`` and
    ``alfa``: within horizon i the spline is ``alfa + b0 * (z - top) + gamma * (z - top)**2``; in a gap after
    horizon i it is linear with slope ``b1``. Follows Bishop et al. (1999) eq. 7 as coded in mpspline2.
    """
    u = np.atleast_2d(np.asarray(top, dtype=float))
    v = np.atleast_2d(np.asarray(bottom, dtype=float))
    y = np.atleast_2d(np.asarray(values, dtype=float))
    nb, n = y.shape
    th = v - u
    if n == 1:
        zero = np.zeros_like(y)
        return {"s_bar": y, "b0": zero, "b1": zero, "gamma": zero, "alfa": y}
    gp = u[:, 1:] - v[:, :-1]
    m = n - 1
    r = np.zeros((nb, m, m))
    ii = np.arange(m)
    r[:, ii, ii] = 2 * th[:, 1:] + 2 * th[:, :-1] + 6 * gp
    if m > 1:
        jj = np.arange(m - 1)
        r[:, jj, jj + 1] = th[:, 1:-1]
        r[:, jj + 1, jj] = th[:, 1:-1]
    q = np.zeros((m, n))
    q[ii, ii] = -1.0
    q[ii, ii + 1] = 1.0
    rinv_q = np.linalg.solve(r, np.broadcast_to(q, (nb, m, n)))
    z = np.eye(n) + 6 * n * lam * np.einsum("ji,bjk->bik", q, rinv_q)
    s_bar = np.linalg.solve(z, y[..., None])[..., 0]
    bb = 6 * np.einsum("bjk,bk->bj", rinv_q, s_bar)
    b0 = np.concatenate([np.zeros((nb, 1)), bb], axis=1)
    b1 = np.concatenate([bb, np.zeros((nb, 1))], axis=1)
    gamma = (b1 - b0) / (2 * th)
    alfa = s_bar - b0 * th / 2 - gamma * th**2 / 3
    return {"s_bar": s_bar, "b0": b0, "b1": b1, "gamma": gamma, "alfa": alfa}


def spline_eval(
    params: dict[str, np.ndarray], top: np.ndarray, bottom: np.ndarray, z: np.ndarray
) -> np.ndarray:
    """Spline values at depths ``z`` (``(B, K)``) within each profile's span (not clamped)."""
    u = np.atleast_2d(top)
    v = np.atleast_2d(bottom)
    n = u.shape[1]
    h = (z[:, :, None] >= u[:, None, :]).sum(axis=2) - 1
    h = np.clip(h, 0, n - 1)
    take = lambda arr, k: np.take_along_axis(arr, k, axis=1)  # noqa: E731
    uh, vh = take(u, h), take(v, h)
    t = z - uh
    inside = take(params["alfa"], h) + take(params["b0"], h) * t + take(params["gamma"], h) * t**2
    if n == 1:
        return inside
    nxt = np.minimum(h + 1, n - 1)
    b1h = take(params["b1"], h)
    phi = take(params["alfa"], nxt) - b1h * (take(u, nxt) - vh)
    gap = phi + b1h * (z - vh)
    return np.where(z < vh, inside, gap)


def spline_means(
    top: np.ndarray,
    bottom: np.ndarray,
    values: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    *,
    lam: float = 0.1,
    bounds: tuple[float, float] = DEFAULT_BOUNDS,
) -> np.ndarray:
    """Mean of the clamped equal-area spline over ``[a, b]`` for each profile (horizon arrays ``(B, n)``)."""
    top = np.atleast_2d(np.asarray(top, dtype=float))
    bottom = np.atleast_2d(np.asarray(bottom, dtype=float))
    values = np.atleast_2d(np.asarray(values, dtype=float))
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    nb, n = values.shape
    if n == 1:
        return np.clip(values[:, 0], *bounds)
    k = max(1, int(np.ceil(np.max(b - a) / _STEP_CM)))
    frac = (np.arange(k) + 0.5) / k
    out = np.empty(nb)
    chunk = max(1, _MAX_BATCH_CELLS // (k * n))
    for s in range(0, nb, chunk):
        sl = slice(s, s + chunk)
        params = spline_fit(top[sl], bottom[sl], values[sl], lam=lam)
        z = a[sl, None] + frac[None, :] * (b[sl] - a[sl])[:, None]
        f = np.clip(spline_eval(params, top[sl], bottom[sl], z), *bounds)
        out[sl] = f.mean(axis=1)
    return out


def _resolve_overlaps(hz: pd.DataFrame, d1: float) -> tuple[pd.DataFrame, dict[int, str]]:
    """Cut profiles at an overlap below ``d1``; report profiles overlapping above it (rows sorted by p, top)."""
    p = hz["p"].to_numpy()
    top = hz["top"].to_numpy()
    bot = hz["bot"].to_numpy()
    if len(p) < 2:
        return hz, {}
    same = p[1:] == p[:-1]
    # an overlap with any earlier horizon of the profile, not just the previous one
    prev_max = pd.Series(bot).groupby(p).cummax().shift(1).to_numpy()
    ov = np.r_[False, same & (top[1:] < prev_max[1:] - _EPS)]
    if not ov.any():
        return hz, {}
    first = pd.Series(np.flatnonzero(ov)).groupby(p[ov]).min()
    reasons = {}
    cut = np.zeros(len(p), dtype=bool)
    for prof, i in first.items():
        if top[i] < d1 - _EPS:
            reasons[int(prof)] = (
                f"overlapping horizons: a horizon starts at {top[i]:g} cm above the previous one's bottom"
            )
        else:
            cut |= (p == prof) & (np.arange(len(p)) >= i)
    if cut.any():
        logger.info("harmonise: ignored %d horizons below overlaps deeper than %g cm", int(cut.sum()), d1)
    return hz.loc[~cut].reset_index(drop=True), reasons


def _profile_constant_columns(frame: pd.DataFrame, codes: np.ndarray, exclude: set[str]) -> list[str]:
    cols = [c for c in frame.columns if c not in exclude]
    if not cols:
        return []
    nun = frame[cols].groupby(codes, sort=False).nunique(dropna=True).max()
    return [c for c in cols if nun.get(c, 2) <= 1]


def _warn_moving_profiles(frame: pd.DataFrame, codes: np.ndarray, n_prof: int) -> None:
    g = frame[["lon", "lat"]].groupby(codes, sort=False)
    moving = int(((g.max() - g.min()).abs() > 1e-9).any(axis=1).sum())
    if moving:
        logger.warning(
            "harmonise: %d of %d profiles have horizons at different locations; using each profile's first",
            moving,
            n_prof,
        )
