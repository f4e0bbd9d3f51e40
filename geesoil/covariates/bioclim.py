"""WorldClim-style bioclimatic variables (BIO1-BIO19) from 12 monthly climatology layers, as pure numpy.

Definitions follow WorldClim / ANUCLIM (O'Donnell & Ignizio 2012, USGS Data Series 691) as implemented in R's
``dismo::biovars``, with two deliberate differences, both so that a layer built here equals the same recipe run in
Earth Engine (``ee.Reducer.stdDev`` is the population standard deviation):

* standard deviations are *population* ones (``ddof=0``); ``dismo`` uses the sample one, larger by
  ``sqrt(12/11)`` (4.4 %);
* BIO15 is the plain coefficient of variation of the monthly totals (``dismo`` adds 1 mm to every month first);
  where a cell has no precipitation at all BIO15 is 0.

Inputs are arrays of shape ``(12, ...)`` (month first, January..December): mean temperature in °C and precipitation
totals in mm per month; optional monthly mean daily minimum/maximum temperature in °C. A "quarter" is any three
consecutive months, wrapping round the year (Nov-Dec-Jan is a quarter); ties pick the earliest starting month.

Outputs (same trailing shape, float; NaN where any month is NaN), with :data:`UNITS`:

========  ==============================================  =========
BIO1      annual mean temperature                          °C
BIO2      mean diurnal range, mean(tmax - tmin)            °C        (needs tmin/tmax)
BIO3      isothermality, 100 x BIO2 / BIO7                 %         (needs tmin/tmax)
BIO4      temperature seasonality, 100 x std(tmean)        °C x 100
BIO5      max temperature of the warmest month             °C        (without tmax: max of monthly means)
BIO6      min temperature of the coldest month             °C        (without tmin: min of monthly means)
BIO7      temperature annual range, BIO5 - BIO6            °C
BIO8      mean temperature of the wettest quarter          °C
BIO9      mean temperature of the driest quarter           °C
BIO10     mean temperature of the warmest quarter          °C
BIO11     mean temperature of the coldest quarter          °C
BIO12     annual precipitation                             mm
BIO13     precipitation of the wettest month               mm
BIO14     precipitation of the driest month                mm
BIO15     precipitation seasonality, 100 x std / mean      %
BIO16     precipitation of the wettest quarter             mm
BIO17     precipitation of the driest quarter              mm
BIO18     precipitation of the warmest quarter             mm
BIO19     precipitation of the coldest quarter             mm
========  ==============================================  =========
"""

from __future__ import annotations

import numpy as np

#: Units of each output (keys as returned by :func:`bioclim`).
UNITS: dict[str, str] = {
    "bio01": "degC",
    "bio02": "degC",
    "bio03": "%",
    "bio04": "degC*100",
    "bio05": "degC",
    "bio06": "degC",
    "bio07": "degC",
    "bio08": "degC",
    "bio09": "degC",
    "bio10": "degC",
    "bio11": "degC",
    "bio12": "mm/yr",
    "bio13": "mm/month",
    "bio14": "mm/month",
    "bio15": "%",
    "bio16": "mm/quarter",
    "bio17": "mm/quarter",
    "bio18": "mm/quarter",
    "bio19": "mm/quarter",
}

#: One-line meaning of each output.
DESCRIPTIONS: dict[str, str] = {
    "bio01": "annual mean temperature",
    "bio02": "mean diurnal range (mean of monthly tmax - tmin)",
    "bio03": "isothermality (100 x bio02 / bio07)",
    "bio04": "temperature seasonality (population std of the 12 monthly mean temperatures x 100)",
    "bio05": "max temperature of the warmest month",
    "bio06": "min temperature of the coldest month",
    "bio07": "temperature annual range (bio05 - bio06)",
    "bio08": "mean temperature of the wettest quarter",
    "bio09": "mean temperature of the driest quarter",
    "bio10": "mean temperature of the warmest quarter",
    "bio11": "mean temperature of the coldest quarter",
    "bio12": "annual precipitation",
    "bio13": "precipitation of the wettest month",
    "bio14": "precipitation of the driest month",
    "bio15": "precipitation seasonality (coefficient of variation of the 12 monthly totals x 100)",
    "bio16": "precipitation of the wettest quarter",
    "bio17": "precipitation of the driest quarter",
    "bio18": "precipitation of the warmest quarter",
    "bio19": "precipitation of the coldest quarter",
}


def _monthly(name: str, a: np.ndarray, shape: tuple[int, ...] | None) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim < 1 or a.shape[0] != 12:
        raise ValueError(f"{name}: expected 12 months on the first axis, got shape {a.shape}")
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name}: shape {a.shape} does not match tmean_monthly's {shape}")
    return a.astype(np.result_type(a.dtype, np.float32), copy=False)


def quarters(monthly: np.ndarray, how: str) -> np.ndarray:
    """The 12 rolling three-month windows (starting Jan, Feb, ... Dec; wrapping) of ``monthly``: ``"sum"`` or ``"mean"``."""
    total = monthly + np.roll(monthly, -1, axis=0) + np.roll(monthly, -2, axis=0)
    if how == "sum":
        return total
    if how == "mean":
        return total / 3
    raise ValueError(f"how must be 'sum' or 'mean', got {how!r}")


def _pick(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    return np.take_along_axis(values, index[np.newaxis], axis=0)[0]


def bioclim(
    tmean_monthly: np.ndarray,
    precip_monthly: np.ndarray,
    *,
    tmin_monthly: np.ndarray | None = None,
    tmax_monthly: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """BIO1-BIO19 (keys ``"bio01"``..``"bio19"``) from ``(12, ...)`` monthly arrays; see the module docstring.

    Temperatures in °C, precipitation in mm per month. Without ``tmin_monthly``/``tmax_monthly`` BIO2 and BIO3
    are left out and BIO5/BIO6 are the extremes of the monthly *mean* temperatures (less extreme than WorldClim's,
    which use monthly maxima/minima). Arrays keep the input's float precision (at least float32).
    """
    t = _monthly("tmean_monthly", tmean_monthly, None)
    p = _monthly("precip_monthly", precip_monthly, t.shape)
    if (tmin_monthly is None) != (tmax_monthly is None):
        raise ValueError("give both tmin_monthly and tmax_monthly, or neither")
    tmin = tmax = None
    if tmin_monthly is not None and tmax_monthly is not None:
        tmin = _monthly("tmin_monthly", tmin_monthly, t.shape)
        tmax = _monthly("tmax_monthly", tmax_monthly, t.shape)

    invalid = np.isnan(t).any(axis=0) | np.isnan(p).any(axis=0)
    if tmin is not None and tmax is not None:
        invalid |= np.isnan(tmin).any(axis=0) | np.isnan(tmax).any(axis=0)
    # NaN months would win every argmax below; fill them and blank the cells at the end.
    if invalid.any():
        t = np.where(np.isnan(t), 0, t)
        p = np.where(np.isnan(p), 0, p)

    out: dict[str, np.ndarray] = {}
    out["bio01"] = t.mean(axis=0)
    if tmin is not None and tmax is not None:
        tmin = np.where(np.isnan(tmin), 0, tmin)
        tmax = np.where(np.isnan(tmax), 0, tmax)
        out["bio02"] = (tmax - tmin).mean(axis=0)
        out["bio05"] = tmax.max(axis=0)
        out["bio06"] = tmin.min(axis=0)
    else:
        out["bio05"] = t.max(axis=0)
        out["bio06"] = t.min(axis=0)
    out["bio07"] = out["bio05"] - out["bio06"]
    if "bio02" in out:
        out["bio03"] = np.divide(
            100 * out["bio02"], out["bio07"], out=np.full_like(out["bio07"], np.nan), where=out["bio07"] != 0
        )
    out["bio04"] = 100 * t.std(axis=0)

    tq = quarters(t, "mean")
    pq = quarters(p, "sum")
    out["bio08"] = _pick(tq, pq.argmax(axis=0))
    out["bio09"] = _pick(tq, pq.argmin(axis=0))
    out["bio10"] = tq.max(axis=0)
    out["bio11"] = tq.min(axis=0)

    out["bio12"] = p.sum(axis=0)
    out["bio13"] = p.max(axis=0)
    out["bio14"] = p.min(axis=0)
    mean_p = p.mean(axis=0)
    out["bio15"] = np.divide(100 * p.std(axis=0), mean_p, out=np.zeros_like(mean_p), where=mean_p > 0)
    out["bio16"] = pq.max(axis=0)
    out["bio17"] = pq.min(axis=0)
    out["bio18"] = _pick(pq, tq.argmax(axis=0))
    out["bio19"] = _pick(pq, tq.argmin(axis=0))

    result = {k: np.array(out[k]) for k in sorted(out)}  # 0-d arrays, not scalars, for (12,) inputs
    if invalid.any():
        for a in result.values():
            a[invalid] = np.nan
    return result
