"""Bioclimatic variables from monthly arrays, checked against hand-computed values and a loop reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from geesoil.covariates.bioclim import DESCRIPTIONS, UNITS, bioclim, quarters

MONTHS = np.arange(12)


def test_constant_temperature_has_no_seasonality() -> None:
    t = np.full((12, 2, 3), 7.5)
    p = np.full((12, 2, 3), 50.0)
    bio = bioclim(t, p)
    assert np.allclose(bio["bio01"], 7.5)
    assert np.allclose(bio["bio04"], 0)
    assert np.allclose(bio["bio05"], 7.5) and np.allclose(bio["bio06"], 7.5)
    assert np.allclose(bio["bio07"], 0)
    assert np.allclose(bio["bio10"], 7.5) and np.allclose(bio["bio11"], 7.5)
    assert np.allclose(bio["bio12"], 600)
    assert np.allclose(bio["bio15"], 0)
    assert bio["bio01"].shape == (2, 3)


def test_sinusoid_temperature_seasonality() -> None:
    # 12 equally spaced samples of a sine: mean of sin^2 is exactly 1/2, so the population std is A / sqrt(2).
    amplitude = 10.0
    t = 12.0 + amplitude * np.sin(2 * np.pi * MONTHS / 12)
    bio = bioclim(t, np.full(12, 30.0))
    assert bio["bio01"] == pytest.approx(12.0)
    assert bio["bio04"] == pytest.approx(100 * amplitude / math.sqrt(2))
    assert bio["bio05"] == pytest.approx(22.0)  # sin(pi/2) at month 3
    assert bio["bio06"] == pytest.approx(2.0)  # sin(3 pi/2) at month 9
    assert bio["bio07"] == pytest.approx(20.0)
    # warmest quarter: months 2, 3, 4 -> 12 + 10 * (sin 60 + sin 90 + sin 120) / 3
    assert bio["bio10"] == pytest.approx(12 + 10 * (math.sqrt(3) + 1) / 3)
    assert bio["bio11"] == pytest.approx(12 - 10 * (math.sqrt(3) + 1) / 3)


def test_precipitation_amounts_and_coefficient_of_variation() -> None:
    # six months of 10 mm, six of 30 mm: mean 20, population std 10 -> CV 50 %.
    p = np.array([10.0] * 6 + [30.0] * 6)
    bio = bioclim(np.zeros(12), p)
    assert bio["bio12"] == pytest.approx(240)
    assert bio["bio13"] == pytest.approx(30)
    assert bio["bio14"] == pytest.approx(10)
    assert bio["bio15"] == pytest.approx(50)
    assert bio["bio16"] == pytest.approx(90)
    assert bio["bio17"] == pytest.approx(30)


def test_rainless_cell_has_zero_precipitation_seasonality() -> None:
    bio = bioclim(np.zeros((12, 1)), np.zeros((12, 1)))
    assert bio["bio15"][0] == 0 and bio["bio12"][0] == 0


def test_quarters_wrap_round_the_year() -> None:
    # Rain only in Dec, Jan, Feb; cold in those months: the wettest quarter is the coldest one, wrapping the year.
    p = np.zeros(12)
    p[[11, 0, 1]] = [40.0, 50.0, 60.0]
    t = np.full(12, 20.0)
    t[[11, 0, 1]] = [-1.0, -3.0, -2.0]
    bio = bioclim(t, p)
    assert bio["bio16"] == pytest.approx(150)
    assert bio["bio08"] == pytest.approx(-2.0)  # mean of DJF
    assert bio["bio11"] == pytest.approx(-2.0)
    assert bio["bio19"] == pytest.approx(150)  # precipitation of the coldest quarter
    assert bio["bio17"] == pytest.approx(0) and bio["bio18"] == pytest.approx(0)
    assert bio["bio09"] == pytest.approx(20.0)  # earliest driest quarter: Mar-May
    q = quarters(p, "sum")
    assert q[11] == pytest.approx(150) and q[0] == pytest.approx(110)


def _reference(t: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """A plain-loop reading of the definitions, independent of the vectorised code."""
    tq = [sum(t[(i + k) % 12] for k in range(3)) / 3 for i in range(12)]
    pq = [sum(p[(i + k) % 12] for k in range(3)) for i in range(12)]
    mean_t = sum(t) / 12
    mean_p = sum(p) / 12
    sd_t = math.sqrt(sum((x - mean_t) ** 2 for x in t) / 12)
    sd_p = math.sqrt(sum((x - mean_p) ** 2 for x in p) / 12)
    wet, dry = pq.index(max(pq)), pq.index(min(pq))
    warm, cold = tq.index(max(tq)), tq.index(min(tq))
    return {
        "bio01": mean_t,
        "bio04": 100 * sd_t,
        "bio05": max(t),
        "bio06": min(t),
        "bio07": max(t) - min(t),
        "bio08": tq[wet],
        "bio09": tq[dry],
        "bio10": max(tq),
        "bio11": min(tq),
        "bio12": sum(p),
        "bio13": max(p),
        "bio14": min(p),
        "bio15": 100 * sd_p / mean_p,
        "bio16": max(pq),
        "bio17": min(pq),
        "bio18": pq[warm],
        "bio19": pq[cold],
    }


def test_matches_loop_reference_on_realistic_random_climates() -> None:
    rng = np.random.default_rng(42)
    h, w = 4, 5
    phase = rng.uniform(0, 12, (h, w))
    t = rng.uniform(-20, 28, (h, w)) + rng.uniform(0, 20, (h, w)) * np.cos(
        2 * np.pi * (MONTHS[:, None, None] - phase) / 12
    )
    p = rng.gamma(2.0, 40.0, (12, h, w))
    bio = bioclim(t, p)
    for i in range(h):
        for j in range(w):
            ref = _reference(list(t[:, i, j]), list(p[:, i, j]))
            for name, value in ref.items():
                assert bio[name][i, j] == pytest.approx(value, rel=1e-9, abs=1e-9), (name, i, j)


def test_tmin_tmax_give_worldclim_extremes_and_isothermality() -> None:
    t = 10 + 8 * np.sin(2 * np.pi * MONTHS / 12)
    tmin, tmax = t - 4, t + 6
    bio = bioclim(t, np.full(12, 20.0), tmin_monthly=tmin, tmax_monthly=tmax)
    assert bio["bio02"] == pytest.approx(10)
    assert bio["bio05"] == pytest.approx(24)  # 10 + 8 + 6
    assert bio["bio06"] == pytest.approx(-2)  # 10 - 8 - 4
    assert bio["bio07"] == pytest.approx(26)
    assert bio["bio03"] == pytest.approx(100 * 10 / 26)
    assert "bio02" not in bioclim(t, np.full(12, 20.0))


def test_nan_month_blanks_only_that_cell() -> None:
    t = np.tile(np.linspace(0, 11, 12)[:, None], (1, 3))
    p = np.full((12, 3), 5.0)
    p[4, 1] = np.nan
    bio = bioclim(t, p)
    for name, a in bio.items():
        assert np.isnan(a[1]), name
        assert np.isfinite(a[[0, 2]]).all(), name
    assert bio["bio01"][0] == pytest.approx(5.5)


def test_float32_in_float32_out_and_all_outputs_documented() -> None:
    t = np.ones((12, 2, 2), dtype=np.float32)
    bio = bioclim(t, t, tmin_monthly=t - 1, tmax_monthly=t + 1)
    assert {a.dtype for a in bio.values()} == {np.dtype(np.float32)}
    assert set(bio) == set(UNITS) == set(DESCRIPTIONS)


@pytest.mark.parametrize(
    ("t", "p", "match"),
    [
        (np.zeros((11, 2)), np.zeros((11, 2)), "12 months"),
        (np.zeros((12, 2)), np.zeros((12, 3)), "does not match"),
    ],
)
def test_bad_shapes_are_rejected(t: np.ndarray, p: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        bioclim(t, p)


def test_tmin_without_tmax_is_rejected() -> None:
    with pytest.raises(ValueError, match="both"):
        bioclim(np.zeros(12), np.zeros(12), tmin_monthly=np.zeros(12))
